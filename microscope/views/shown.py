"""The show halves of the views, in the order their panels appear on a page: all the site and the
notebook API know of views (no compute code, no torch). views/registry.py keeps it in step with `VIEWS`."""
from __future__ import annotations

from microscope.circuits.panel import SHOWN as CIRCUITS
from microscope.view import Shown
from microscope.views.atlas import VIEW as ATLAS
from microscope.examples.panel import SHOWN as EXAMPLES
from microscope.views.featurevis import VIEW as FEATUREVIS
from microscope.views.sae import VIEW as SAE

SHOWN: dict[str, Shown] = {shown.name: shown for shown in (FEATUREVIS, EXAMPLES, SAE, CIRCUITS, ATLAS)}

__all__ = ["SHOWN"]
