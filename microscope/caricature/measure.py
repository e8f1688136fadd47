"""What a photo, its caricature and its DeepDream do at the layer, measured on the stored pixels (what a reader
reloads is what is reported): cosines between the caricatures' and the photos' activations, the activations'
norms, and the units most active in each image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from microscope.featurevis.objectives import as_4d
from microscope.store import ActiveUnit


@dataclass
class Measured:
    cosines: np.ndarray  # (N, N): cos(a(caricature i), a(photo j))
    norms: dict[str, np.ndarray]  # "photo", "caricature", "deepdream" -> (N,) |a(image)|
    top: dict[str, list[list[ActiveUnit]]]  # the same kinds -> per photo, its most active units


def layer_activations(extractor, layer: str, pixels: np.ndarray, device) -> torch.Tensor:
    """(N, C, H, W) float32 of uint8 (N, S, S, 3) images, without gradient and in full precision."""
    with torch.no_grad():
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).to(device)
        return as_4d(extractor(images)[layer]).float()


def most_active(activation: torch.Tensor, top: int) -> list[list[ActiveUnit]]:
    """Per element, the `top` units of highest mean over positions, highest first (ties to the lower unit)."""
    means = activation.mean(dim=(2, 3)).cpu().numpy().astype(np.float64)
    found = []
    for row in means:
        order = np.lexsort((np.arange(len(row)), -row))[:top]
        found.append([ActiveUnit(int(u), float(row[u])) for u in order])
    return found


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    norms = a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :]
    return (a @ b.T / norms.clamp(min=1e-12)).cpu().numpy()


def measure(extractor, layer: str, images: dict[str, np.ndarray], device, top: int) -> Measured:
    """`images`: "photo", "caricature" and "deepdream" -> (N, S, S, 3) uint8, photo i's in row i of each."""
    acts = {kind: layer_activations(extractor, layer, pixels, device) for kind, pixels in images.items()}
    return Measured(cosine_matrix(acts["caricature"], acts["photo"]),
                    {kind: a.flatten(1).double().norm(dim=1).cpu().numpy() for kind, a in acts.items()},
                    {kind: most_active(a, top) for kind, a in acts.items()})
