"""Everything the examples stage keeps about one layer, updated batch by batch on the device.

Per channel, from the layer's activation A and its pre-ReLU twin P (A itself when there is none):

- top examples: images ranked by max over positions of A, with the argmax (first in row-major order);
- bottom examples: images ranked by min over positions of P, lowest first (negative examples);
- band samples: uniform random images from quantile bands of the same score as the top examples;
- histogram of P over every position of every image (exact counts, see histogram.py). For a ReLU
  layer this holds A's histogram too: A's is P's with all mass of bins at or below 0 moved to the
  bin (-w, 0];
- mean of A over all positions and images, and the fraction of positions where A > 0 (for a ReLU
  layer, its non-zero fraction), read exactly off P's histogram (A > 0 exactly where P > 0).

A twin is taken to be what its name says, A = relu(P) element for element (true of every model of
the zoo: the twin is the convolution, or concatenation of branch convolutions, before the ReLU),
unless `exact_twin` is False (a sparse autoencoder's TopK code is zero where P is positive too):
then P's maximum is found on P and A's non-zero fraction is counted on A.

Memory is fixed by k, the histogram and band sizes - never by the number of images. Activations are
read in a (batch, positions, channels) view, which is free for channels_last tensors.

On CUDA the updates are `sync_free`: no value goes back to the host, so the host queues batch after
batch while the device works. Where the CPU takes sparse paths (argmax positions gathered for the few
pairs a batch adds to the top k, only the band bins an item enters re-sorted, a histogram re-gridded
only when its range grew: choices that read a count back), the device computes every pair, every bin
and every grid, the same results (tests/test_accumulator_device.py); faults (non-finite activations) are
noted on the device and raised when the state is read (`check`, at every checkpoint). The dataset indices
come from the loader, on the host: what depends on them alone (the sampled positions of the similar
units, the concepts' images) is made there and copied over.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from microscope.activations.correlation import Correlation
from microscope.activations.maxima import ImageMaxima
from microscope.activations.positions import SampleSettings, vectors_of
from microscope.activations.reservoir import Reservoir
from microscope.examples.bands import DEFAULT_BANDS, BandSampler
from microscope.examples.histogram import GridHistogram
from microscope.examples.topk import TopExamples


def positions_last(activation: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) or (N, C) -> (N, H*W, C), a view when the tensor is channels_last."""
    if activation.dim() == 2:
        return activation[:, None, :]
    n, c = activation.shape[:2]
    return activation.permute(0, 2, 3, 1).reshape(n, -1, c)


def first_argmax(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Index of the first maximum along `dim` (torch documents max's indices as the first one):
    for the (N, P, C) channels-last view, max's reduction is faster than argmax's (bench/NOTES.md)."""
    return torch.max(values, dim=dim).indices


def first_argmin(values: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.min(values, dim=dim).indices


class Locator:
    """Argmax (or argmin) positions of chosen (image, channel) pairs of a (N, P, C) activation.

    Early in a pass most pairs are kept and one full reduction is cheapest; later only a few, and
    gathering their P values each is. A gathered pair costs about six reads of the full reduction
    per pair (bench/NOTES.md), hence the threshold. Either way: the first position in row-major
    order, as torch documents.
    """

    def __init__(self, values: torch.Tensor, reduce):
        self.values, self.reduce, self.full = values, reduce, None

    def __call__(self, rows: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        if self.full is None and rows.numel() * 6 > self.values.shape[0] * self.values.shape[2]:
            self.full = self.reduce(self.values, dim=1)
        if self.full is not None:
            return self.full[rows, channels]
        return self.reduce(self.values[rows, :, channels], dim=1)


@dataclass(frozen=True)
class AtlasSampling:
    """The atlas's sample: `positions` random inner positions of every image offered to a reservoir
    of `capacity` vectors (microscope/activations/reservoir.py), seeded."""

    capacity: int
    positions: int
    seed: int = 0
    edge: int = 1

    @classmethod
    def for_layer(cls, capacity: int, positions: int, seed: int, height: int, width: int, n_images: int | None):
        """None where the layer has no inner position (logits) or no sample is wanted; `positions` 0:
        enough per image to fill the reservoir from `n_images`, at least one, at most all inner ones."""
        inner = max(0, height - 2) * max(0, width - 2)
        if capacity < 1 or inner < 1:
            return None
        wanted = positions or max(1, -(-capacity // max(1, n_images or 1)))
        return cls(capacity, min(wanted, inner), seed)

    def draw(self, activation: torch.Tensor, indices: torch.Tensor):
        """(vectors, image, y, x) of the drawn positions of a batch's (N, C, H, W) activation."""
        return vectors_of(activation, indices, SampleSettings(positions_per_image=self.positions, edge=self.edge,
                                                              seed=self.seed))


class LayerAccumulator:
    PARTS = ("top", "bottom", "bands", "histogram")

    def __init__(self, channels: int, width: int, *, top_k: int, histogram_bins: int = 128,
                 band_bins: int = 32, band_samples: int = 8, seed: int = 0,
                 device: torch.device | str = "cpu", exact_twin: bool = True, atlas: AtlasSampling | None = None,
                 maxima: ImageMaxima | None = None, correlation: Correlation | None = None,
                 sync_free: bool | None = None):
        self.width = width  # of the activation grid, to turn flat positions into (y, x)
        self.maxima, self.correlation = maxima, correlation  # what concepts and similar units need
        self.atlas = atlas
        self.reservoir = Reservoir.empty(atlas.capacity, channels, atlas.seed) if atlas else None
        self.exact_twin = exact_twin
        self.sync_free = torch.device(device).type == "cuda" if sync_free is None else sync_free
        self.positive = torch.zeros(channels, dtype=torch.int64, device=device)  # counted when not exact_twin
        self.top = TopExamples(channels, top_k, device, sync_free=self.sync_free)
        self.bottom = TopExamples(channels, top_k, device, sync_free=self.sync_free)  # ranks -min: lowest first
        self.bands = BandSampler(channels, band_bins, band_samples, seed, device, sync_free=self.sync_free)
        self.histogram = GridHistogram(channels, histogram_bins, device, sync_free=self.sync_free)
        self.total = torch.zeros(channels, dtype=torch.float64, device=device)
        self.images = 0

    def update(self, activation: torch.Tensor, pre_relu: torch.Tensor | None, indices: torch.Tensor) -> None:
        """One batch: its activation, pre-ReLU twin (or None) and the images' dataset indices (on the host)."""
        host = indices.cpu()
        indices = host.to(activation.device, non_blocking=True)
        values = positions_last(activation)
        low = values if pre_relu is None else positions_last(pre_relu)
        # Extremes without their positions are much cheaper; the argmax/argmin (first in row-major
        # order) is found afterwards for the few (image, channel) pairs that are kept.
        top, bottom = values.amax(dim=1), low.amin(dim=1)
        top_at, bottom_at = Locator(values, first_argmax), Locator(low, first_argmin)
        self.top.update(top, indices, top_at)
        self.bottom.update(-bottom, indices, bottom_at)
        self.bands.update(top, indices, top_at)
        if self.exact_twin:
            self.histogram.update(low, bottom.amin(0), self._maximum(top, low, pre_relu is not None, self.sync_free))
        else:
            self.histogram.update(low, bottom.amin(0), low.amax(dim=(0, 1)))
            self.positive += (values > 0).sum(dim=(0, 1))
        self.total += values.sum(dim=1).sum(0, dtype=torch.float64)
        self.images += activation.shape[0]
        if self.reservoir is not None:  # (drawn on the host: only with --atlas-vectors)
            self.reservoir.offer(*self.atlas.draw(activation, host))
        if self.maxima is not None:
            self.maxima.update(top, host)
        if self.correlation is not None:
            self.correlation.update(activation, host)

    @staticmethod
    def _maximum(top: torch.Tensor, low: torch.Tensor, twin: bool, sync_free: bool = False) -> torch.Tensor:
        """Batch maximum of `low` per channel, from the top scores where they tell it (saves a pass).

        With a twin, A = relu(P): max P = max A wherever max A > 0; other channels are read from P
        (sync_free: P's maximum is read for all, rather than ask which channels need it).
        """
        high = top.amax(0)
        if twin and sync_free:
            return torch.where(high > 0, high, low.amax(dim=(0, 1)))
        if twin:
            silent = torch.nonzero(high <= 0)[:, 0]
            if silent.numel():
                high = high.clone()
                high[silent] = low[:, :, silent].amax(dim=(0, 1))
        return high

    def check(self) -> None:
        """Raise what sync-free updates noted (a non-finite activation): one small read-back."""
        self.histogram.check()
        self.bands.histogram.check()

    def summary(self, bands=DEFAULT_BANDS) -> dict[str, np.ndarray]:
        """The arrays of summary.npz (see microscope/store/schema.py, ExamplesSummary)."""
        self.check()
        out = {}
        for name, kept, sign in (("top", self.top, 1.0), ("bottom", self.bottom, -1.0)):
            empty = kept.index < 0
            out[f"{name}_values"] = (sign * kept.values).masked_fill(empty, float("nan")).cpu().numpy()
            out[f"{name}_index"] = kept.index.cpu().numpy()
            out[f"{name}_y"], out[f"{name}_x"] = self._grid(kept.position)
        sample = self.bands.select(bands)
        out["band_names"] = np.array([name for name, _, _ in bands])
        out["band_fractions"] = np.array([(start, stop) for _, start, stop in bands], dtype=np.float64)
        out["band_index"], out["band_values"] = sample["index"], sample["value"]
        out["band_y"], out["band_x"] = self._grid(torch.from_numpy(sample["position"]))
        out["band_count"] = sample["count"]
        out["band_value_range"] = sample["value_range"]
        out["band_fraction_range"] = sample["fraction_range"]
        positions = self.histogram.counts.sum(1)
        out["hist_counts"] = self.histogram.counts.cpu().numpy()
        out["hist_edges"] = self.histogram.edges().cpu().numpy()
        out["mean"] = (self.total / positions.clamp_min(1)).cpu().numpy()
        positive = self.histogram.positive_counts() if self.exact_twin else self.positive
        out["nonzero_fraction"] = (positive.double() / positions.clamp_min(1)).cpu().numpy()
        out["n_positions"] = positions.cpu().numpy()
        return out

    def _grid(self, position: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        position = position.cpu()
        empty = position < 0
        y = torch.where(empty, -1, position // self.width).to(torch.int32)
        x = torch.where(empty, -1, position % self.width).to(torch.int32)
        return y.numpy(), x.numpy()

    def merge(self, other: "LayerAccumulator") -> None:
        """Fold in the state of another part of the dataset: afterwards this state is exactly the
        one a single pass over both parts would reach (every part merges exactly)."""
        for name in self.PARTS:
            getattr(self, name).merge(getattr(other, name))
        self.total += other.total.to(self.total.device)
        self.positive += other.positive.to(self.positive.device)
        self.images += other.images
        if self.reservoir is not None:
            self.reservoir.merge(other.reservoir)
        for part in ("maxima", "correlation"):
            if getattr(self, part) is not None:
                getattr(self, part).merge(getattr(other, part))

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as flat numpy arrays ("top/key", ..., "total", "images"), for the store."""
        self.check()
        arrays = {f"{name}/{key}": value.cpu().numpy()
                  for name in self.PARTS for key, value in getattr(self, name).state_dict().items()}
        arrays["total"] = self.total.cpu().numpy()
        arrays["positive"] = self.positive.cpu().numpy()
        arrays["images"] = np.array(self.images, dtype=np.int64)
        if self.reservoir is not None:
            arrays.update(self.reservoir.state_arrays())
        for part in (self.maxima, self.correlation):
            if part is not None:
                arrays.update(part.state_arrays())
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        device = self.total.device
        for name in self.PARTS:
            prefix = f"{name}/"
            getattr(self, name).load_state_dict({key[len(prefix):]: torch.from_numpy(np.array(value)).to(device)
                                                 for key, value in arrays.items() if key.startswith(prefix)})
        self.total = torch.from_numpy(np.array(arrays["total"])).to(device)
        self.positive = torch.from_numpy(np.array(arrays["positive"])).to(device)
        self.images = int(arrays["images"])
        if self.reservoir is not None:
            self.reservoir = Reservoir.from_state_arrays(arrays)
        for part in (self.maxima, self.correlation):
            if part is not None:
                part.load_state_arrays(arrays)
