"""The show half of the in-browser export: a model-wide result that no unit or layer page shows.

The model's "Try an image" page is the site's (site/try_page.py, from `stored.read_exported`); this half only
names the view so that it is registered (views/shown.py) and says nothing on a layer or unit page.
"""
from __future__ import annotations

from microscope.view import Shown


class InBrowserShown(Shown):
    name = "inbrowser"
    title = "Try an image"
    level = "layer"

    def applies(self, layer) -> bool:
        return False  # a model's export, not a layer's: no layer page says it is missing


SHOWN = InBrowserShown()
