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
class Transparency:
    """The numbers of a transparent render (the `channel-alpha` objective; alpha.py does the work).

    Lucid's alpha notebook, adapted. The image gets a fourth Fourier plane, squashed to an alpha by a
    sigmoid (no colour mixing); every step the RGBA image is composited over a random background before
    the transforms, so only the opaque part can excite the unit reliably, and an opacity penalty makes
    every opaque pixel pay for itself.

    - Background: Lucid's `collapse_alpha_random`, a random image of the same parameterization (1/f
      spectrum, decorrelated colour, sigmoid) with coefficients of sd `background_sd` (Lucid's 0.5):
      smooth colour fields with detail at every scale, as in photos. Grey or white noise would be a
      background the unit could learn to use (grey) or that early layers react to violently (noise).
      One background per step, seeded from (seed, step) like the transforms: a unit's render does not
      depend on its batch-mates.
    - Penalty: value = objective - `penalty` x |objective| (detached, per image) x mean alpha. Lucid
      subtracts a fixed 20000 x mean alpha, a number tied to TF InceptionV1's activation scale; scaling
      by the objective's own magnitude makes it a share instead, the same for every layer and model: at
      2.0 an opaque pixel must bring twice the image's average objective per pixel. Detached, so it never
      pushes the objective itself down. Measured on the real weights (bench/NOTES.md, inception_4c, fast
      recipe): penalty 0.5 / 1 / 2 / 4 leave a mean alpha of about 0.64 / 0.50 / 0.38 / 0.30, and the
      unit's maximum over random backgrounds stays 2-4x its best dataset example at every one of them;
      2 clears most of what does not matter while the channel mean keeps 0.73-0.84 of its value at 1.
    - The penalty is off for the first `penalty_from` share of the steps: the picture forms first (the
      alpha rises where content helps), then what does not earn its keep fades.
    - The record's activations are measured on the saved render over `measure_backgrounds` seeded random
      backgrounds (the means of each background's channel mean and spatial max).

    Part of a render's recipe dict only for transparent objectives: the other objectives' stored records
    (and so their reuse) do not change. Change a number, bump `version`.
    """

    background_sd: float = 0.5
    penalty: float = 2.0
    penalty_from: float = 0.25
    measure_backgrounds: int = 8
    version: str = "alpha-fourier-background-relative-penalty/1"

    def penalty_start(self, steps: int) -> int:
        """The first step (of `steps` in all) whose objective carries the opacity penalty."""
        return round(steps * self.penalty_from)

    def as_dict(self) -> dict:
        return {"version": self.version, "background": "fourier", "background_sd": self.background_sd,
                "penalty": self.penalty, "penalty_scale": "abs(objective), detached",
                "penalty_from": self.penalty_from, "measure_backgrounds": self.measure_backgrounds}

    @classmethod
    def from_dict(cls, data: dict) -> "Transparency":
        return cls(background_sd=data["background_sd"], penalty=data["penalty"], penalty_from=data["penalty_from"],
                   measure_backgrounds=data["measure_backgrounds"], version=data["version"])


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
    transparency: Transparency = field(default_factory=Transparency)  # used by transparent objectives only

    def polish_steps(self, steps: int) -> int:
        """How many of `steps` are polish steps (never all of them: the transforms find the picture)."""
        return min(steps - 1, round(steps * self.polish_share))

    def as_dict(self, transparent: bool = False) -> dict:
        """Every number; the transparency numbers only for a transparent objective's renders."""
        data = {"version": self.version, "learning_rate": self.learning_rate, "optimizer": "adam",
                "init_sd": self.init_sd, "decay_power": self.decay_power, "decorrelate": self.decorrelate,
                "parameterization": "fft", "sigmoid": True, "transforms": self.transforms.as_dict(),
                "diversity_images": self.diversity_images, "diversity_weight": self.diversity_weight,
                "curve_every": self.curve_every}
        if self.name != "lucid":  # Lucid's dict stays as it always was: stores made before keep their renders
            data.update(name=self.name, polish_share=self.polish_share)
        if transparent:
            data["transparency"] = self.transparency.as_dict()
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
                   default_steps=_default_steps(data.get("name", "lucid")),
                   transparency=Transparency.from_dict(data["transparency"]) if "transparency" in data
                   else Transparency())


def _default_steps(name: str) -> int:
    return RECIPES[name].default_steps if name in RECIPES else Recipe.default_steps


RECIPES = {
    "lucid": Recipe(),
    "fast": Recipe(polish_share=0.25, default_steps=128, name="fast",
                   version="lucid-fft-decorrelated-sigmoid-standard-transforms+polish/1"),
}
