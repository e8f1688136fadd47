"""The recipe: every number of Lucid's feature visualization in one place, with a version string.

A unit's provenance records the recipe version; change any number here and bump the version, so that
stored renders made with the old numbers are recognised as stale and recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TransformRecipe:
    """Lucid's `standard_transforms` (see transform.py for what each number does)."""

    pad: int = 12
    pad_value: float = 0.5
    jitter_first: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5
    jitter_last: int = 4

    def as_dict(self) -> dict:
        return {"pad": self.pad, "pad_value": self.pad_value, "jitter_first": self.jitter_first,
                "scales": list(self.scales), "angles_degrees": list(self.angles), "jitter_last": self.jitter_last}


PRECISIONS = ("auto", "fp32", "bf16")  # of the network during optimisation (see render.py)
RECIPE_VERSION = "lucid-fft-decorrelated-sigmoid-standard-transforms/1"


@dataclass(frozen=True)
class Recipe:
    learning_rate: float = 0.05  # Adam, as Lucid's render_vis
    init_sd: float = 0.01  # spread of the initial Fourier coefficients
    decay_power: float = 1.0  # spectrum scaled by 1/frequency^decay_power
    decorrelate: bool = True
    transforms: TransformRecipe = field(default_factory=TransformRecipe)
    diversity_images: int = 4  # images per unit for the diversity objective
    diversity_weight: float = 100.0  # Lucid's tutorials: channel - 1e2 * diversity
    curve_every: int = 8  # keep every 8th step of the loss curve
    version: str = RECIPE_VERSION

    def as_dict(self) -> dict:
        return {"version": self.version, "learning_rate": self.learning_rate, "optimizer": "adam",
                "init_sd": self.init_sd, "decay_power": self.decay_power, "decorrelate": self.decorrelate,
                "parameterization": "fft", "sigmoid": True, "transforms": self.transforms.as_dict(),
                "diversity_images": self.diversity_images, "diversity_weight": self.diversity_weight,
                "curve_every": self.curve_every}

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """The inverse of `as_dict`: a job's spec carries its recipe as data."""
        t = data["transforms"]
        transforms = TransformRecipe(pad=t["pad"], pad_value=t["pad_value"], jitter_first=t["jitter_first"],
                                     scales=tuple(t["scales"]), angles=tuple(t["angles_degrees"]),
                                     jitter_last=t["jitter_last"])
        return cls(learning_rate=data["learning_rate"], init_sd=data["init_sd"], decay_power=data["decay_power"],
                   decorrelate=data["decorrelate"], transforms=transforms, diversity_images=data["diversity_images"],
                   diversity_weight=data["diversity_weight"], curve_every=data["curve_every"], version=data["version"])
