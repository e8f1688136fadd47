"""The show halves of the views, in the order their panels appear on a page: all the site and the
notebook API know of views (no compute code, no torch). views/registry.py keeps it in step with `VIEWS`."""
from __future__ import annotations

from microscope.atlas.page import SHOWN as ATLAS
from microscope.caricature.panel import SHOWN as CARICATURE
from microscope.circuits.panel import SHOWN as CIRCUITS
from microscope.concepts.panel import SHOWN as CONCEPTS
from microscope.examples.panel import SHOWN as EXAMPLES
from microscope.featurevis.panel import SHOWN as FEATUREVIS
from microscope.inbrowser.panel import SHOWN as INBROWSER
from microscope.sae.panel import SHOWN as SAE
from microscope.view import Shown

SHOWN: dict[str, Shown] = {shown.name: shown for shown in (FEATUREVIS, EXAMPLES, CONCEPTS, SAE, CIRCUITS, CARICATURE, ATLAS,
                                                                INBROWSER)}

__all__ = ["SHOWN"]
