"""The recipes: every number of a feature visualization in one place, each with a version string.

`lucid` is Lucid's own (512 steps, every step transformed). `fast` spends a quarter of that compute:
128 steps, of which the last quarter are "polish" steps without transforms (and a fresh Adam), which
sharpen what the transformed steps found - bench/featurevis_recipes.py measures it against Lucid's.
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

    @property
    def identity(self) -> bool:
        """No padding, jitter, scaling or rotation: the image goes to the network as it is."""
        return (self.pad == self.jitter_first == self.jitter_last == 0 and set(self.scales) == {1.0}
                and set(self.angles) == {0.0})

    def as_dict(self) -> dict:
        return {"pad": self.pad, "pad_value": self.pad_value, "jitter_first": self.jitter_first,
                "scales": list(self.scales), "angles_degrees": list(self.angles), "jitter_last": self.jitter_last}


PRECISIONS = ("auto", "fp32", "bf16")  # of the network during optimisation (see render.py)
RECIPE_VERSION = "lucid-fft-decorrelated-sigmoid-standard-transforms/1"
NO_TRANSFORMS = TransformRecipe(pad=0, jitter_first=0, scales=(1.0,), angles=(0.0,), jitter_last=0)


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
    polish_share: float = 0.0  # the last share of the steps: no transforms, a fresh Adam
    default_steps: int = 512  # --steps when not given (not part of the result: RenderConfig has the steps)
    name: str = "lucid"
    version: str = RECIPE_VERSION

    def polish_steps(self, steps: int) -> int:
        """How many of `steps` are polish steps (never all of them: the transforms find the picture)."""
        return min(steps - 1, round(steps * self.polish_share))

    def as_dict(self) -> dict:
        data = {"version": self.version, "learning_rate": self.learning_rate, "optimizer": "adam",
                "init_sd": self.init_sd, "decay_power": self.decay_power, "decorrelate": self.decorrelate,
                "parameterization": "fft", "sigmoid": True, "transforms": self.transforms.as_dict(),
                "diversity_images": self.diversity_images, "diversity_weight": self.diversity_weight,
                "curve_every": self.curve_every}
        if self.name != "lucid":  # Lucid's dict stays as it always was: stores made before keep their renders
            data.update(name=self.name, polish_share=self.polish_share)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        """The inverse of `as_dict`: a job's spec carries its recipe as data."""
        t = data["transforms"]
        transforms = TransformRecipe(pad=t["pad"], pad_value=t["pad_value"], jitter_first=t["jitter_first"],
                                     scales=tuple(t["scales"]), angles=tuple(t["angles_degrees"]),
                                     jitter_last=t["jitter_last"])
        return cls(learning_rate=data["learning_rate"], init_sd=data["init_sd"], decay_power=data["decay_power"],
                   decorrelate=data["decorrelate"], transforms=transforms, diversity_images=data["diversity_images"],
                   diversity_weight=data["diversity_weight"], curve_every=data["curve_every"], version=data["version"],
                   name=data.get("name", "lucid"), polish_share=data.get("polish_share", 0.0),
                   default_steps=_default_steps(data.get("name", "lucid")))


def _default_steps(name: str) -> int:
    return RECIPES[name].default_steps if name in RECIPES else Recipe.default_steps


RECIPES = {
    "lucid": Recipe(),
    "fast": Recipe(polish_share=0.25, default_steps=128, name="fast",
                   version="lucid-fft-decorrelated-sigmoid-standard-transforms+polish/1"),
}
