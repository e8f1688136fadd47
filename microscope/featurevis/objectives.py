"""What to maximise: objectives are values you can add, scale and negate, like Lucid's `Objective`.

An objective maps the activations of a batch ({layer name: tensor}) to one number *per batch element*,
shape (N,). Keeping elements apart lets one batch render many units at once (element i maximises
unit `units[i]`) and report each element's own value; the optimiser maximises the sum.

    objective = channel("inception_4a_pre_relu", 97) - 100 * diversity("inception_4a", group_size=4)
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

Activations = Mapping[str, torch.Tensor]


class Objective:
    def __init__(self, function: Callable[[Activations], torch.Tensor], layers: Sequence[str], description: str):
        self.function = function
        self.layers = tuple(dict.fromkeys(layers))  # the activations it reads, in first-use order
        self.description = description

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self.function(activations)

    def __repr__(self) -> str:
        return self.description

    def __add__(self, other: "Objective | float") -> "Objective":
        if isinstance(other, Objective):
            return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"({self} + {other})")
        return Objective(lambda a: self(a) + other, self.layers, f"({self} + {other})")

    __radd__ = __add__

    def __neg__(self) -> "Objective":
        return Objective(lambda a: -self(a), self.layers, f"-{self}")

    def __sub__(self, other: "Objective | float") -> "Objective":
        return self + (-other)

    def __rsub__(self, other: float) -> "Objective":
        return (-self) + other

    def __mul__(self, other: "Objective | float") -> "Objective":
        if isinstance(other, Objective):
            return Objective(lambda a: self(a) * other(a), self.layers + other.layers, f"{self} * {other}")
        return Objective(lambda a: self(a) * other, self.layers, f"{other} * {self}")

    __rmul__ = __mul__

    def __truediv__(self, other: float) -> "Objective":
        return self * (1.0 / other)


def as_4d(activation: torch.Tensor) -> torch.Tensor:
    # Fully connected layers (logits) are (N, C): treat them as a 1x1 image so every objective applies.
    return activation[:, :, None, None] if activation.dim() == 2 else activation


class _OnDevice:
    """Tensors an objective needs at every step, made (or moved) once per device, dtype and batch size.

    An objective is called at every optimisation step; a tensor made there from a Python list, or moved
    there from the CPU, is a host-to-device copy per step, and the GPU's queue waits on the host for it.
    """

    def __init__(self):
        self._made: dict = {}

    def get(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]


def _select_units(activation: torch.Tensor, units: int | Sequence[int], made: _OnDevice) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): element i's channel units[i] (or the same channel for all)."""
    activation = as_4d(activation)
    n, device = activation.shape[0], activation.device
    if not isinstance(units, int) and len(units) != n:
        raise ValueError(f"{len(units)} units given for a batch of {n}")

    def index():
        chosen = [units] * n if isinstance(units, int) else list(units)
        return torch.arange(n, device=device), torch.as_tensor(chosen, dtype=torch.long, device=device)
    rows, channels = made.get(("units", n, device), index)
    return activation[rows, channels].float()


def _vector(vector, like: torch.Tensor, made: _OnDevice) -> torch.Tensor:
    """`vector` as a tensor of `like`'s dtype on its device (once: see _OnDevice)."""
    return made.get(("vector", like.dtype, like.device),
                    lambda: torch.as_tensor(vector, dtype=like.dtype, device=like.device))


def _describe(units) -> str:
    return str(units) if isinstance(units, int) else f"[{len(units)} units]"


def channel(layer: str, units: int | Sequence[int]) -> Objective:
    """Mean over all positions of a channel: the unit's response to the whole image."""
    made = _OnDevice()
    return Objective(lambda a: _select_units(a[layer], units, made).mean(dim=(1, 2)), [layer],
                     f"channel({layer}, {_describe(units)})")


def neuron(layer: str, units: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """One position of a channel, by default the centre (bottom-right of the middle four when even)."""
    made = _OnDevice()

    def value(a: Activations) -> torch.Tensor:
        selected = _select_units(a[layer], units, made)
        height, width = selected.shape[1:]
        return selected[:, height // 2 if y is None else y, width // 2 if x is None else x]
    return Objective(value, [layer], f"neuron({layer}, {_describe(units)})")


def class_logit(label: int | Sequence[int], layer: str = "logits") -> Objective:
    """A class's score before softmax (maximising the probability instead would just suppress others)."""
    made = _OnDevice()
    return Objective(lambda a: _select_units(a[layer], label, made).mean(dim=(1, 2)), [layer],
                     f"class_logit({layer}, {_describe(label)})")


def direction(layer: str, vector: torch.Tensor, cossim_pow: float = 0.0) -> Objective:
    """Mean over positions of the dot product of the activation vector with `vector` ((C,) or (N, C)).

    With cossim_pow > 0 each position's dot product is weighted by its cosine similarity (floored at
    0.1) to that power, which favours images pointing the activation *along* the direction rather than
    merely making it long (Lucid's `direction` with cossim_pow; useful for dictionary features).
    """
    made = _OnDevice()

    def value(a: Activations) -> torch.Tensor:
        activation = as_4d(a[layer]).float()
        vec = _vector(vector, activation, made).expand(activation.shape[0], -1)[:, :, None, None]
        dot = (activation * vec).sum(dim=1)
        if cossim_pow == 0:
            return dot.mean(dim=(1, 2))
        eps = 1e-4
        cossim = dot / ((activation.norm(dim=1) + eps) * (vec.norm(dim=1) + eps))
        return (dot * cossim.clamp(min=0.1) ** cossim_pow).mean(dim=(1, 2))
    return Objective(value, [layer], f"direction({layer}, cossim_pow={cossim_pow})")


def direction_neuron(layer: str, vector: torch.Tensor, cossim_pow: float = 2.0) -> Objective:
    """`direction` at the centre position only: dot(a, v) * max(0.1, cos(a, v))^cossim_pow - the
    activation atlas's objective (Lucid), one mean vector `v` ((C,) or (N, C)) per batch element."""
    made = _OnDevice()

    def value(a: Activations) -> torch.Tensor:
        activation = as_4d(a[layer]).float()
        centre = activation[:, :, activation.shape[2] // 2, activation.shape[3] // 2]
        vec = _vector(vector, centre, made).expand(centre.shape[0], -1)
        dot = (centre * vec).sum(dim=1)
        cossim = dot / ((centre.norm(dim=1) + 1e-4) * (vec.norm(dim=1) + 1e-4))
        return dot * cossim.clamp(min=0.1) ** cossim_pow
    return Objective(value, [layer], f"direction_neuron({layer}, cossim_pow={cossim_pow})")


def gram_similarity(activation: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N,): for each element, the summed cosine similarity of its Gram matrix to those of the other
    elements of its group (consecutive runs of `group_size` elements)."""
    activation = as_4d(activation).float()
    n, channels = activation.shape[:2]
    if n % group_size:
        raise ValueError(f"batch of {n} is not a whole number of groups of {group_size}")
    flat = activation.reshape(n, channels, -1)
    grams = (flat @ flat.transpose(1, 2)).reshape(n, -1)
    # Lucid's l2_normalize: divide by the norm, with a floor of sqrt(1e-10) so an all-zero Gram stays zero.
    grams = grams / grams.norm(dim=1, keepdim=True).clamp(min=1e-5)
    grams = grams.reshape(n // group_size, group_size, -1)
    similarity = grams @ grams.transpose(1, 2)
    return (similarity.sum(dim=2) - torch.diagonal(similarity, dim1=1, dim2=2)).reshape(n)


def diversity(layer: str, group_size: int) -> Objective:
    """Lucid's diversity term: how alike the "styles" (Gram matrices) of a group's images are.

    Subtract it, scaled, to make a group of images of one unit differ. Summed over a group it is
    `group_size` times Lucid's `diversity`, just as the group's summed channel values are `group_size`
    times Lucid's batch mean, so Lucid's weight (100) keeps its meaning.
    """
    return Objective(lambda a: gram_similarity(a[layer], group_size), [layer],
                     f"diversity({layer}, groups of {group_size})")

