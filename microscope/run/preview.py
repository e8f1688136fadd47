"""`build --preview`: a browsable first site in a couple of minutes on a laptop's CPU.

The preview is the same build with smaller settings - the first units of one layer, the fast recipe at
a small size, the channel objective only, a fixed sample of the photos, short caricatures of two of them - so it goes through the same
pipeline into the same store and site folder. The full build afterwards (the same command without
--preview) refines the site in place: it recomputes what the preview made smaller (every unit, the
examples over every photo, Lucid's renders) and keeps what does not depend on those settings (the
model's catalogue, the circuits, and every result of other layers). Options given on the command line
always win over the preview's.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from microscope.run.session import Request
from microscope.selection import Units


@dataclass(frozen=True)
class Preset:
    """The preview's values: the run's units and image sample, and typed changes to each view's settings
    (field -> value, applied with dataclasses.replace, so an unknown field or a bad value is an error)."""

    units: Units = Units(((0, 7),))
    image_sample: int = 300
    views: dict = field(default_factory=lambda: {
        "featurevis": {"recipe": "fast", "size": 128, "objectives": ("channel",)},
        "examples": {"top_k": 16},
        "caricature": {"caricature_recipe": "fast", "caricature_steps": 24, "deepdream_steps": 2, "photo_count": 2,
                       "caricature_size": 96},
    })


PREVIEW = Preset()


def preview_request(request: Request, given: set[str], preset: Preset = PREVIEW) -> Request:
    """`request` with the preview's values for every setting the user did not give (`given`: option names,
    which are the settings' field names)."""
    settings = dict(request.settings)
    for view, changes in preset.views.items():
        if settings.get(view) is not None:
            settings[view] = replace(settings[view], **{name: value for name, value in changes.items()
                                                        if name not in given})
    run = request.run
    if request.images is not None and "image_sample" not in given:
        run = replace(run, paths=replace(run.paths, images=replace(request.images, sample=preset.image_sample)))
    return replace(request, run=run, settings=settings, units=request.units if "units" in given else preset.units)


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
