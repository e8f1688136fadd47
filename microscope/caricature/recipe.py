"""Every number of a caricature and of a DeepDream, each recipe with a version string: change a number, bump
the version, and stored images made with the old numbers are recomputed.

Caricature (Lucid's `recipes/caricature.py` and its notebook "Feature Inversion Caricatures"): an image, started
from noise, is optimised so that its activations at the layer have a large dot product with the photo's, over
every channel and position: dot(a(x), a(photo)) * max(0.1, cos(a(x), a(photo)))^cossim_pow. Lucid's default
power is 0: the bare dot product, which rewards exaggerating what the photo already has (a caricature) over
reproducing it (a feature inversion, which would minimise a distance). The image is parameterised and
transformed as our feature visualizations are (featurevis/recipe.py: Fourier spectrum, decorrelated colour,
Lucid's standard transforms, Adam at 0.05); the photo goes through the same random transform at every step,
as it does in Lucid's batch, so that image and photo stay aligned position by position. The fast recipe's idea
applies: fewer steps, the last quarter without transforms (`polish_share`).

DeepDream (the 2015 "Inceptionism" notebook's recipe, with its numbers): gradient ascent of the layer's summed
squared activation on the photo itself; each step moves every pixel by `step` times the gradient divided by its
mean absolute value (so the step does not depend on the layer's scale), after a random circular shift of up to
`jitter` pixels each way (so no fixed pixel grid is favoured); `steps` steps per octave, over `octaves` octaves
from the photo shrunk by `octave_scale`^(octaves - 1) up to its own size, the detail found at each octave carried
up to the next (so large structures form first). Octaves, their scale and the jitter are the notebook's; its 10
steps of 1.5 grey levels (out of 255) per octave raise inception_3a's activation norm on ImageNet photos at 224 px
only 1.2-1.6 times (bench/NOTES.md), a dream hard to tell from its photo, so ours takes 20 steps of 4 grey levels
(1.7-2.2 times there, more in later layers). Octaves smaller than `min_side` pixels are skipped (the deepest
layers need a grid of their own).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from microscope.featurevis.recipe import RECIPES as FEATUREVIS_RECIPES, Recipe

TOP_UNITS = 6  # units listed as the most active in each image


@dataclass(frozen=True)
class CaricatureRecipe:
    image: Recipe = field(default_factory=lambda: FEATUREVIS_RECIPES["lucid"])  # parameterisation, transforms, Adam
    cossim_pow: float = 0.0  # Lucid's default: the bare dot product
    cossim_floor: float = 0.1  # Lucid's: a negative cosine never flips the objective's sign
    version: str = "lucid-caricature-dot-cossim/1"

    def as_dict(self) -> dict:
        return {"version": self.version, "cossim_pow": self.cossim_pow, "cossim_floor": self.cossim_floor,
                "image": self.image.as_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "CaricatureRecipe":
        return cls(image=Recipe.from_dict(data["image"]), cossim_pow=data["cossim_pow"],
                   cossim_floor=data["cossim_floor"], version=data["version"])

    @classmethod
    def named(cls, name: str, cossim_pow: float) -> "CaricatureRecipe":
        """The caricature with the feature visualization recipe `name` (lucid or fast) as its image's."""
        return cls(image=FEATUREVIS_RECIPES[name], cossim_pow=cossim_pow)


@dataclass(frozen=True)
class DeepDreamRecipe:
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 20  # per octave
    step: float = 4 / 255  # mean change of a pixel per step, in [0, 1] units
    jitter: int = 32  # pixels, each way
    min_side: int = 32  # octaves smaller than this are skipped
    version: str = "inceptionism-deepdream/1"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DeepDreamRecipe":
        return cls(**data)

    def sides(self, size: int) -> list[int]:
        """The octaves' image sides, smallest first, ending with `size` itself."""
        sides = [round(size / self.octave_scale ** i) for i in range(self.octaves)]
        return [side for side in reversed(sides) if side >= self.min_side or side == size]

    def with_steps(self, steps: int) -> "DeepDreamRecipe":
        return replace(self, steps=steps)
