"""The model zoo: one module per architecture, each exporting a `SPEC` (see `spec.py`)."""
from __future__ import annotations

from functools import partial
from typing import Callable

from microscope.errors import UsageError
from microscope.models.spec import LayerSpec, ModelSpec, Preprocessing, WeightsSpec

__all__ = ["LayerSpec", "ModelSpec", "Preprocessing", "WeightsSpec", "get_spec", "model_names"]


def _registry() -> dict[str, Callable[[], ModelSpec]]:
    """name -> how to make its spec. Imported and made lazily: `microscope --help` pays for none of them,
    and a torchvision model's spec (its graph traced for its layers) is made only when it is asked for."""
    from microscope.models import googlenet, inceptionv1, inceptionv1_caffe, torchvision_zoo

    specs = {spec.name: (lambda spec=spec: spec) for spec in (inceptionv1.SPEC, inceptionv1_caffe.SPEC, googlenet.SPEC)}
    specs.update({entry.name: partial(torchvision_zoo.spec_of, entry.name) for entry in torchvision_zoo.ENTRIES})
    return specs


def model_names() -> list[str]:
    return list(_registry())


def get_spec(name: str) -> ModelSpec:
    """A model of the zoo by name, or your own: FILE.py:factory or package.module:factory (models/custom.py)."""
    from microscope.models import custom

    if custom.is_custom(name):
        return custom.spec_for(custom.canonical(name))
    registry = _registry()
    if name not in registry:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(registry)}")
    return registry[name]()
