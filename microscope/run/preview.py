"""`build --preview`: a browsable first site in a couple of minutes on a laptop's CPU.

The preview is the same build with smaller settings - the first units of one layer, the fast recipe at
a small size, the channel objective only, a fixed sample of the photos - so it goes through the same
pipeline into the same store and site folder. The full build afterwards (the same command without
--preview) refines the site in place: it recomputes what the preview made smaller (every unit, the
examples over every photo, Lucid's renders) and keeps what does not depend on those settings (the
model's catalogue, the circuits, and every result of other layers). Options given on the command line
always win over the preview's.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from microscope.selection import Units

# option name (as the command's function receives it) -> the preview's value
SETTINGS = {
    "units": Units(((0, 7),)),
    "recipe_name": "fast",
    "size": 128,
    "objectives": ("channel",),
    "image_sample": 300,
    "top_k": 16,
}


def preview_values(values: dict, given: set[str]) -> dict:
    """`values` with the preview's settings for every option the user did not give."""
    return {**values, **{name: value for name, value in SETTINGS.items() if name not in given}}


def preview_layer(layers: list[str]) -> str:
    """The layer a preview shows when none is chosen: the middle one of the model's layers, where
    units are neither plain edges nor whole objects."""
    return layers[len(layers) // 2]


def refine_command(argv: list[str], layer: str | None) -> str:
    """The full build to run next: the same command line without --preview (with the layer the preview
    chose, if it chose one: without --layers the full build would compute every layer)."""
    program = f"python {argv[0]}" if argv[0].endswith(".py") else Path(argv[0]).name
    words = [word for word in argv[1:] if word != "--preview"] + (["--layers", layer] if layer else [])
    return " ".join([program, shlex.join(words)])
