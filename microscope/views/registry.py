"""The registry of views: every kind of result microscope computes, stores and shows.

A new view is one module (see microscope/view.py and docs/architecture.md) plus its template partial
`templates/views/<name>.html`, registered here. The order is the order of their panels on a page.
"""
from __future__ import annotations

from microscope.errors import UsageError
from microscope.view import Computed
from microscope.views.atlas import VIEW as ATLAS
from microscope.views.caricature import VIEW as CARICATURE
from microscope.views.circuits import VIEW as CIRCUITS
from microscope.views.concepts import VIEW as CONCEPTS
from microscope.views.examples import VIEW as EXAMPLES
from microscope.views.featurevis import VIEW as FEATUREVIS
from microscope.views.inbrowser import VIEW as INBROWSER
from microscope.views.sae import VIEW as SAE
from microscope.views.shown import SHOWN

VIEWS: dict[str, Computed] = {view.name: view for view in (FEATUREVIS, EXAMPLES, CONCEPTS, SAE, CIRCUITS, CARICATURE, ATLAS,
                                                                 INBROWSER)}


def register(view: Computed) -> None:
    """Add a view (a plugin, or a test's), both its halves; a later registration of the same name replaces it."""
    VIEWS[view.name] = view
    SHOWN[view.name] = view.shown


def unregister(name: str) -> None:
    VIEWS.pop(name, None)
    SHOWN.pop(name, None)


def build_views() -> list[str]:
    """The views `build` computes (an SAE is trained by its own command, then built like any layer)."""
    return [name for name, view in VIEWS.items() if view.in_build]


def get_view(name: str) -> Computed:
    if name not in VIEWS:
        raise UsageError(f"unknown view {name!r}; views: {', '.join(VIEWS)}")
    return VIEWS[name]


__all__ = ["VIEWS", "build_views", "get_view", "register", "unregister"]
