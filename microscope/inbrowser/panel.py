"""The show half of the in-browser export, as yet: a model-wide result that no unit or layer page shows.

The "Try an image" page (issue 30, the page half) reads `stored.read_exported`; until it exists this half only
names the view so that it can be registered (views/shown.py) and says nothing on any page.
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
