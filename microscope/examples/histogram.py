"""Per-channel histograms with exact counts, built in one streaming pass without knowing the range.

Every channel has `bins` bins of width 2**exponent on a grid anchored at zero: bin `i` covers
(edge_i, edge_i+1] with edge_i = (low + i) * 2**exponent. Bins are closed on the right so that 0
falls into the bin (-w, 0]; the count of values > 0 is then an exact sum of whole bins, and that
is how a ReLU layer's non-zero fraction is read off the histogram of its pre-ReLU twin.

When a batch brings a value outside the current window, the window first slides (the grid stays,
only `low` moves) and, if the range no longer fits in `bins` bins, the width doubles as often as
needed: each old bin lies entirely inside one new bin (the grids are nested powers of two), so its
count moves over exactly. The result depends only on the values seen, never on their order or on
how they were batched: the exponent is always the smallest one at which the range [min, max] fits,
but at least MIN_EXPONENT and at least the magnitude bound (|value| < 2**21 bin widths, so that bin
keys are exact in float32 - see `_count`), and `low` is the grid cell of the minimum. Both lower
bounds only grow as values arrive, which is what keeps the final state independent of the order.

All state is a few (channels,) and (channels, bins) tensors on the device of the activations.

`sync_free` (what a GPU needs: see accumulator.py) updates without reading a value back: the exponent
is picked from the few candidates the search could reach, the counts are moved at every batch (an
identity map where the grid stayed), and what would have raised at once (a non-finite value, a lost
count) is noted on the device and raised by `check()`, which reads it. Same counts, same grid.
"""
from __future__ import annotations

import torch

# 2**-20 ~ 1e-6: the finest bin width. A channel that never varies (a dead ReLU) keeps it.
MIN_EXPONENT = -20
# From the first candidate exponent (the current one, the magnitude bound or the log2 guess, whichever is
# highest) the one that fits is at most 3 steps up (4 with log2's rounding): these many are tried at once.
CANDIDATES = 6
NON_FINITE, LOST = 0, 1  # the faults a sync-free histogram notes
_MAGIC, _MAGIC_BITS = 2**23, 0x4B000000  # the float32 2**23 and its bits


class GridHistogram:
    def __init__(self, channels: int, bins: int = 128, device: torch.device | str = "cpu", sync_free: bool = False):
        if channels * bins >= 2**22:  # keys must stay exact in float32 (see _count)
            raise ValueError(f"{channels} channels x {bins} bins is too many for one histogram")
        self.bins = bins
        self.exponent = torch.full((channels,), MIN_EXPONENT, dtype=torch.int64, device=device)
        self.low = torch.zeros(channels, dtype=torch.int64, device=device)
        self.counts = torch.zeros(channels, bins, dtype=torch.int64, device=device)
        self.vmin = torch.full((channels,), float("inf"), dtype=torch.float64, device=device)
        self.vmax = torch.full((channels,), float("-inf"), dtype=torch.float64, device=device)
        self._offsets = torch.arange(channels, device=device) * bins
        self._keys: torch.Tensor | None = None  # scratch for bin keys, kept from batch to batch (see _count)
        self.sync_free = sync_free
        self.faults = torch.zeros(2, dtype=torch.bool, device=device)  # NON_FINITE, LOST (sync_free only)

    @property
    def channels(self) -> int:
        return self.counts.shape[0]

    def update(self, values: torch.Tensor, vmin: torch.Tensor | None = None,
               vmax: torch.Tensor | None = None) -> torch.Tensor | None:
        """Count `values` (..., channels): every element, channels last.

        `vmin`/`vmax` (channels,) are the batch's extremes if the caller has them already.
        Returns the old-bin -> new-bin map (channels, bins) when the grid changed, else None, so
        that structures keyed by bin (see bands.py) can follow.
        """
        flat = values.reshape(-1, self.channels)
        if flat.shape[0] == 0:
            return None
        if vmin is None or vmax is None:
            vmin, vmax = torch.aminmax(flat, dim=0)
        if self.sync_free:
            self.faults[NON_FINITE] |= ~(torch.isfinite(vmin).all() & torch.isfinite(vmax).all())
            remap = self._refit(torch.minimum(self.vmin, vmin.double()), torch.maximum(self.vmax, vmax.double()))
            self.counts += self._count(values)
            return remap
        if not bool(torch.isfinite(vmin).all() & torch.isfinite(vmax).all()):
            raise ValueError("activations contain inf or nan; cannot histogram them")
        remap = self._fit(torch.minimum(self.vmin, vmin.double()), torch.maximum(self.vmax, vmax.double()))
        self.counts += self._count(values)
        return remap

    def bin_of(self, values: torch.Tensor) -> torch.Tensor:
        """Bin index (int64) of each value of (..., channels), which must lie in the window."""
        scale = torch.pow(2.0, -self.exponent.double()).to(values.dtype)
        return (values * scale).ceil_().to(torch.int64) - 1 - self.low

    def _count(self, values: torch.Tensor) -> torch.Tensor:
        # Three cheap passes and a bincount. v * 2**-e is exact, so ceil() puts v exactly on the
        # grid. Adding the shift and 2**23 is exact too (integers below 2**24: the exponent's
        # magnitude bound keeps cells below 2**22), and the float 2**23 + key has the bits
        # 0x4B000000 + key, so the key is read from the bits instead of converted (which costs as
        # much as all the rest).
        # The keys go to a buffer kept between batches: a fresh tensor this size (tens of MB) comes
        # from mmap as untouched pages, and faulting them in costs more than the multiplication itself (bench/NOTES.md).
        scale = torch.pow(2.0, -self.exponent.double()).to(values.dtype)
        shift = (self._offsets - 1 - self.low + _MAGIC).to(values.dtype)
        if self._keys is None or self._keys.numel() < values.numel() or self._keys.dtype != values.dtype \
                or self._keys.device != values.device:
            self._keys = torch.empty(values.numel(), dtype=values.dtype, device=values.device)
        keys = self._keys[:values.numel()].view(values.shape)
        torch.mul(values, scale, out=keys)
        keys = keys.ceil_().add_(shift).view(torch.int32).sub_(_MAGIC_BITS)
        size = self.channels * self.bins
        if self.sync_free:  # in range unless a value was not finite (a fault)
            return key_counts(keys.reshape(-1).clamp_(0, size - 1), size).view(self.channels, self.bins)
        counts = torch.bincount(keys.reshape(-1), minlength=size)
        return counts.view(self.channels, self.bins)

    def _refit(self, vmin: torch.Tensor, vmax: torch.Tensor) -> torch.Tensor:
        """`_fit` without a read-back: always returns the old-bin -> new-bin map, and moves the counts."""
        first = self._first_candidate(vmin, vmax)
        seen = torch.isfinite(vmax - vmin)
        tried = first[None] + torch.arange(CANDIDATES, device=first.device)[:, None]  # (CANDIDATES, channels)
        fits = ~seen | (_cell(vmax, tried) - _cell(vmin, tried) < self.bins)
        self.faults[LOST] |= ~fits[-1].all()
        # The first that fits, as the search finds it: a coarser grid never spans more cells, so the
        # candidates that do not fit are the ones before it.
        exponent = first + (~fits).sum(0)
        low = _cell(vmin, exponent)
        remap, lost = self._remap(exponent, low)
        self.faults[LOST] |= lost
        self._regrid(remap, exponent, low)
        self.vmin, self.vmax = vmin, vmax
        return remap

    def check(self) -> None:
        """Raise what a sync-free update noted (reads two flags back: at a checkpoint, not every batch)."""
        faults = self.faults.tolist()
        if faults[NON_FINITE]:
            raise ValueError("activations contain inf or nan; cannot histogram them")
        if faults[LOST]:
            raise AssertionError("histogram window lost counts; this is a bug")

    def merge(self, other: "GridHistogram") -> tuple[torch.Tensor | None, torch.Tensor]:
        """Fold in the histogram of another part of the data, exactly.

        The merged grid is the one a single pass over both parts reaches (it depends only on the
        range of the values), and both parts' bins nest in it. Returns this histogram's old-bin ->
        new-bin map (None if its grid stayed) and the other's, so that bin-keyed structures follow.
        """
        remap = self._fit(torch.minimum(self.vmin, other.vmin.to(self.vmin.device)),
                          torch.maximum(self.vmax, other.vmax.to(self.vmax.device)),
                          at_least=other.exponent.to(self.exponent.device))
        cells = other.low.to(self.low.device)[:, None] + torch.arange(self.bins, device=self.low.device)
        factor = torch.pow(2, self.exponent - other.exponent.to(self.exponent.device))[:, None]
        theirs = torch.div(cells, factor, rounding_mode="floor") - self.low[:, None]
        counts = other.counts.to(self.counts.device)
        if bool(((theirs < 0) | (theirs >= self.bins))[counts > 0].any()):
            raise AssertionError("histogram merge lost counts; this is a bug")
        self.counts.scatter_add_(1, theirs.clamp(0, self.bins - 1), counts)
        return remap, theirs

    def _fit(self, vmin: torch.Tensor, vmax: torch.Tensor, at_least: torch.Tensor | None = None) -> torch.Tensor | None:
        exponent = self._smallest_exponent(vmin, vmax, at_least)
        low = _cell(vmin, exponent)
        changed = (exponent != self.exponent) | (low != self.low)
        self.vmin, self.vmax = vmin, vmax
        if not bool(changed.any()):
            return None
        remap, lost = self._remap(exponent, low)
        if bool(lost):
            raise AssertionError("histogram window lost counts; this is a bug")
        self._regrid(remap, exponent, low)
        return remap

    def _remap(self, exponent: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Old bin -> new bin on the grid (exponent, low), and whether an occupied old bin falls outside it."""
        # Old bin i is grid cell low+i at the old width; at the new width it is cell floor(g / 2**d).
        cells = self.low[:, None] + torch.arange(self.bins, device=self.low.device)
        remap = torch.div(cells, torch.pow(2, exponent - self.exponent)[:, None], rounding_mode="floor") - low[:, None]
        return remap, (((remap < 0) | (remap >= self.bins)) & (self.counts > 0)).any()

    def _regrid(self, remap: torch.Tensor, exponent: torch.Tensor, low: torch.Tensor) -> None:
        """Move the counts to the new grid (each old bin lies inside one new bin)."""
        self.counts = torch.zeros_like(self.counts).scatter_add_(1, remap.clamp(0, self.bins - 1), self.counts)
        self.exponent, self.low = exponent, low

    def _smallest_exponent(self, vmin: torch.Tensor, vmax: torch.Tensor,
                           at_least: torch.Tensor | None = None) -> torch.Tensor:
        """The smallest exponent >= the current one (and >= `at_least`) at which [vmin, vmax] spans
        at most `bins` cells."""
        seen = torch.isfinite((vmax - vmin).clamp_min(0))
        exponent = self._first_candidate(vmin, vmax, at_least)
        for _ in range(64):
            too_wide = seen & (_cell(vmax, exponent) - _cell(vmin, exponent) >= self.bins)
            if not bool(too_wide.any()):
                return exponent
            exponent = exponent + too_wide.to(torch.int64)
        raise AssertionError("histogram exponent did not converge; this is a bug")

    def _first_candidate(self, vmin: torch.Tensor, vmax: torch.Tensor,
                         at_least: torch.Tensor | None = None) -> torch.Tensor:
        """Where the search for the exponent starts: no lower one can fit, or may be used."""
        spread = (vmax - vmin).clamp_min(0)
        seen = torch.isfinite(spread)
        magnitude = torch.where(seen, torch.maximum(vmin.abs(), vmax.abs()), torch.zeros_like(vmin))
        # |v| < 2**e_mag * 2**21: every cell index, and so every bin key, stays below 2**22.
        floor = torch.frexp(magnitude).exponent.to(torch.int64) - 21
        # A lower bound (cells span > spread / width - 1), one lower for safety against log2 rounding.
        guess = torch.floor(torch.log2(spread.clamp_min(1e-300) / self.bins)).to(torch.int64) - 1
        exponent = torch.maximum(self.exponent, floor)
        if at_least is not None:
            exponent = torch.maximum(exponent, at_least)
        return torch.where(seen, torch.maximum(exponent, guess), exponent)

    def edges(self) -> torch.Tensor:
        """(channels, bins + 1) float64 bin edges; bin i is (edges[i], edges[i + 1]]."""
        cells = self.low[:, None] + torch.arange(self.bins + 1, device=self.low.device)
        return cells.double() * torch.pow(2.0, self.exponent.double())[:, None]

    def positive_counts(self) -> torch.Tensor:
        """(channels,) exact number of values > 0: bins whose left edge is >= 0."""
        cells = self.low[:, None] + torch.arange(self.bins, device=self.low.device)
        return (self.counts * (cells >= 0)).sum(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"exponent": self.exponent, "low": self.low, "counts": self.counts,
                "vmin": self.vmin, "vmax": self.vmax}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.counts.device
        for name in ("exponent", "low", "counts", "vmin", "vmax"):
            setattr(self, name, state[name].to(device))


def key_counts(keys: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) int64 counts of each key in [0, size): bincount without its read-back (it reads the largest
    key back to size its output), as an index_add_ of ones."""
    ones = torch.ones(1, dtype=torch.int64, device=keys.device).expand(keys.numel())
    return torch.zeros(size, dtype=torch.int64, device=keys.device).index_add_(0, keys, ones)


def _cell(values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Grid cell g with values in (g * 2**e, (g + 1) * 2**e], exactly (float64 holds every float32 * 2**k)."""
    finite = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
    return torch.ceil(finite * torch.pow(2.0, -exponent.double())).to(torch.int64) - 1
