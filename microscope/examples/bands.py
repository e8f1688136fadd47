"""Random images from quantile bands of a channel's scores (top 0.1 %, 0.1-1 %, 1-10 %, 10-50 %).

Top examples show what a channel responds to most; images from lower quantiles show what it does
most of the time. The band edges are quantiles of the whole dataset, unknown until the pass ends,
so the samples are drawn from strata that do not depend on them: the bins of an exact histogram of
the scores (a `GridHistogram`, one score per image and channel).

Every (image, channel) gets a pseudo-random priority, a hash of (seed, channel, dataset index), and
each histogram bin keeps the `per_bin` items with the smallest priorities - a uniform sample of the
bin without replacement. After the pass a band is a run of whole bins (a bin belongs to the band
that holds the middle of its rank range), and the band's sample is the `per_bin` smallest
priorities among its bins' keepers. That is exact: the smallest m priorities of a union are among
the smallest m of each part, so the result is a uniform random sample of the band's images, the
same one whatever the batch size, the order, or where a run was resumed. When the histogram's bins
merge (the range grew), their keepers merge the same way.

Memory: channels x bins x per_bin entries, fixed (e.g. 832 x 32 x 8). Per batch, only bins that
receive an item beating their current worst priority are re-sorted - or, `sync_free` (a GPU: see
accumulator.py), every bin's keepers and every item of the batch in one sort, which reads nothing back
and keeps the same samples.
"""
from __future__ import annotations

import numpy as np
import torch

from microscope.examples.histogram import GridHistogram, key_counts

# (name, top fraction from, top fraction to): band "1-10%" holds the images ranked in the top 10 %
# but not in the top 1 %.
DEFAULT_BANDS = (("top 0.1%", 0.0, 0.001), ("0.1-1%", 0.001, 0.01), ("1-10%", 0.01, 0.1), ("10-50%", 0.1, 0.5))
EMPTY = torch.iinfo(torch.int64).max  # the key of an empty keeper slot: after every real key
_MASK32, _LOW31 = 0xFFFFFFFF, 0x7FFFFFFF


def priorities(seed: int, channels: int, indices: torch.Tensor) -> torch.Tensor:
    """(batch, channels) int64 keys, unique per channel: a 32-bit hash above the 31-bit dataset index."""
    channel = torch.arange(channels, device=indices.device, dtype=torch.int64)
    x = _mix((indices.to(torch.int64)[:, None] + ((seed * 0x9E3779B1) & _MASK32)) & _MASK32)
    x = _mix(x ^ ((channel * 0x2545F491) & _MASK32))
    return (x << 31) | indices[:, None]


def _mix(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer finaliser (multiply by a 27-bit constant: no int64 overflow).
    for _ in range(2):
        x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _pack_payload(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Score (float32 bits) and argmax position in one int64, so a keeper moves as two tensors."""
    return (values.float().view(torch.int32).to(torch.int64) << 32) | (positions.to(torch.int64) & _MASK32)


def _unpack_payload(payload: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (payload >> 32).to(torch.int32).view(torch.float32), payload & _MASK32


def _ranked(group: torch.Tensor, key: torch.Tensor, payload: torch.Tensor, groups: int):
    """The entries ordered by (group, key) - by key, then stably by group; empty slots sort last in their
    group - and each one's rank in its group (0: the smallest key). Nothing is read back."""
    order = torch.sort(key).indices
    order = order[torch.sort(group[order], stable=True).indices]
    group, key, payload = group[order], key[order], payload[order]
    counts = key_counts(group, groups)
    rank = torch.arange(group.numel(), device=group.device) - (torch.cumsum(counts, 0) - counts)[group]
    return group, key, payload, rank


class BandSampler:
    def __init__(self, channels: int, bins: int = 32, per_bin: int = 8, seed: int = 0,
                 device: torch.device | str = "cpu", sync_free: bool = False):
        self.histogram = GridHistogram(channels, bins, device, sync_free=sync_free)
        self.sync_free = sync_free
        self.per_bin, self.seed = per_bin, seed
        # Keepers of each bin, sorted by key (smallest first); the dataset index is the key's low 31 bits.
        self.key = torch.full((channels, bins, per_bin), EMPTY, dtype=torch.int64, device=device)
        self.payload = torch.zeros((channels, bins, per_bin), dtype=torch.int64, device=device)

    def update(self, scores: torch.Tensor, indices: torch.Tensor, locate) -> None:
        """scores: (batch, channels); indices: (batch,) dataset indices (< 2**31).

        `locate(rows, channels)` gives the argmax positions of batch rows x channels; it is only
        asked for the entries that beat their bin's worst keeper (sync_free: for every entry).
        """
        channels, bins, _ = self.key.shape
        scores = scores.float()
        indices = indices.to(self.key.device)
        remap = self.histogram.update(scores, *torch.aminmax(scores, dim=0))
        key = priorities(self.seed, channels, indices)
        binned, first = self.histogram.bin_of(scores), torch.arange(channels, device=key.device) * bins
        if self.sync_free:  # (bins in range unless a score was not finite: a fault the histogram noted)
            self._update_every_bin(remap, scores, key, first + binned.clamp_(0, bins - 1), locate)
            return
        group = first + binned
        if remap is not None:
            self._follow(remap)
        accept = key < self.key.view(channels * bins, -1)[group, -1]  # beats the bin's worst keeper
        row, channel = torch.nonzero(accept, as_tuple=True)
        if row.numel():
            payload = _pack_payload(scores[row, channel], locate(row, channel))
            self._merge(group[row, channel], key[row, channel], payload)

    def merge(self, other: "BandSampler") -> None:
        """Fold in the keepers of another part of the data: each bin keeps the `per_bin` smallest
        priorities of both parts' keepers in it, which is what one pass over both would keep."""
        remap, theirs = self.histogram.merge(other.histogram)
        if remap is not None:
            self._follow(remap)
        channels, bins, per_bin = self.key.shape
        key, payload = other.key.to(self.key.device), other.payload.to(self.key.device)
        group = torch.arange(channels, device=key.device)[:, None] * bins + theirs.clamp(0, bins - 1)
        group = group[:, :, None].expand(-1, -1, per_bin)
        real = key != EMPTY
        if bool(real.any()):
            self._merge(group[real], key[real], payload[real])

    def _follow(self, remap: torch.Tensor) -> None:
        """The histogram's bins moved or merged: move the keepers with them.

        A channel whose width stayed the same only slid (bin j became j + shift): its keepers are
        gathered over. Channels whose bins merged are re-merged with `_merge`.
        """
        channels, bins, per_bin = self.key.shape
        shift = remap[:, 0]
        slid = (remap == torch.arange(bins, device=remap.device) + shift[:, None]).all(1) & (shift != 0)
        rows = torch.nonzero(slid)[:, 0]
        if rows.numel():
            source = torch.arange(bins, device=remap.device) - shift[rows, None]  # new bin j <- old j - shift
            inside = ((source >= 0) & (source < bins))[:, :, None]
            source = source.clamp(0, bins - 1)[:, :, None].expand(-1, -1, per_bin)
            self.key[rows] = torch.where(inside, self.key[rows].gather(1, source), EMPTY)
            self.payload[rows] = self.payload[rows].gather(1, source)
        merged = torch.nonzero(~slid & (remap != torch.arange(bins, device=remap.device)).any(1))[:, 0]
        if merged.numel():
            group = (merged[:, None] * bins + remap[merged].clamp(0, bins - 1))[:, :, None].expand(-1, -1, per_bin)
            key, payload = self.key[merged].reshape(-1), self.payload[merged].reshape(-1)
            self.key[merged] = EMPTY
            self._merge(group.reshape(-1), key, payload)

    def _update_every_bin(self, remap: torch.Tensor, scores: torch.Tensor, key: torch.Tensor, group: torch.Tensor,
                          locate) -> None:
        """Every keeper to its bin on the new grid and every item of the batch to its bin, merged in one sort.

        An item that beats no keeper of its bin ranks below `per_bin` and is dropped, as the sparse path
        never takes it: the same keepers (and payloads) either way, without a read-back."""
        channels, bins, per_bin = self.key.shape
        rows, _ = scores.shape
        moved = torch.arange(channels, device=remap.device)[:, None] * bins + remap.clamp(0, bins - 1)
        row = torch.arange(rows, device=key.device)[:, None].expand(rows, channels).reshape(-1)
        channel = torch.arange(channels, device=key.device).expand(rows, channels).reshape(-1)
        payload = _pack_payload(scores.reshape(-1), locate(row, channel))
        group, key, payload, rank = _ranked(
            torch.cat([moved[:, :, None].expand(-1, -1, per_bin).reshape(-1), group.reshape(-1)]),
            torch.cat([self.key.reshape(-1), key.reshape(-1)]), torch.cat([self.payload.reshape(-1), payload]),
            channels * bins)
        # Every bin has its per_bin keepers (empty ones included) among the entries: all its slots are written.
        # What is not kept goes to one slot past the end, dropped.
        slot = torch.where(rank < per_bin, group * per_bin + rank, channels * bins * per_bin)
        self.key = torch.full((channels * bins * per_bin + 1,), EMPTY, dtype=torch.int64, device=key.device).scatter_(
            0, slot, key)[:-1].view(channels, bins, per_bin)
        self.payload = torch.zeros(channels * bins * per_bin + 1, dtype=torch.int64, device=key.device).scatter_(
            0, slot, payload)[:-1].view(channels, bins, per_bin)

    def _merge(self, group: torch.Tensor, key: torch.Tensor, payload: torch.Tensor) -> None:
        """Merge entries bound for bins `group` (channel * bins + bin) into those bins' keepers."""
        channels, bins, per_bin = self.key.shape
        slots_key = self.key.view(channels * bins, per_bin)
        slots_payload = self.payload.view(channels * bins, per_bin)
        touched = torch.nonzero(torch.bincount(group, minlength=channels * bins))[:, 0]
        group = torch.cat([touched.repeat_interleave(per_bin), group])
        key = torch.cat([slots_key[touched].reshape(-1), key])
        payload = torch.cat([slots_payload[touched].reshape(-1), payload])
        group, key, payload, rank = _ranked(group, key, payload, channels * bins)
        keep = rank < per_bin
        slots_key[group[keep], rank[keep]] = key[keep]
        slots_payload[group[keep], rank[keep]] = payload[keep]

    def select(self, bands=DEFAULT_BANDS) -> dict[str, np.ndarray]:
        """Each band's sample, highest score first, and where the band really lies.

        (channels, n_bands, per_bin): `index` (-1 padded), `value` (NaN padded), `position`;
        (channels, n_bands): `count`, the images in the band; (channels, n_bands, 2): `value_range`,
        the band's scores lie in (low, high], and `fraction_range`, the top-fraction interval its
        whole bins cover (the requested one, to the histogram's resolution). An empty band (no bin's
        middle falls in it, e.g. the top 0.1 % of a small dataset) has count 0 and NaN ranges.
        """
        counts = self.histogram.counts.cpu().numpy()
        edges = self.histogram.edges().cpu().numpy()
        key = self.key.cpu()
        value, position = (t.numpy() for t in _unpack_payload(self.payload.cpu()))
        key = key.numpy()
        channels, bins, per_bin = key.shape
        shape = (channels, len(bands))
        out = {
            "index": np.full(shape + (per_bin,), -1, np.int64),
            "value": np.full(shape + (per_bin,), np.nan, np.float32),
            "position": np.full(shape + (per_bin,), -1, np.int64),
            "count": np.zeros(shape, np.int64),
            "value_range": np.full(shape + (2,), np.nan),
            "fraction_range": np.full(shape + (2,), np.nan),
        }
        rows = np.arange(channels)
        total = counts.sum(1)
        above = total[:, None] - np.cumsum(counts, 1)  # images in higher bins
        middle = (above + counts / 2) / np.maximum(total, 1)[:, None]
        for b, (_, start, stop) in enumerate(bands):
            member = (counts > 0) & (middle > start) & (middle <= stop)  # (channels, bins)
            # The per_bin smallest keys of the band's bins (keys are unique; EMPTY sorts last),
            # then those highest score first.
            keys = np.where(member[:, :, None], key, EMPTY).reshape(channels, -1)
            take = np.argsort(keys, axis=1, kind="stable")[:, :per_bin]
            kept = np.take_along_axis(keys, take, 1) != EMPTY
            scores = np.take_along_axis(value.reshape(channels, -1), take, 1)
            take = np.take_along_axis(take, np.argsort(np.where(kept, -scores, np.inf), axis=1, kind="stable"), 1)
            kept = np.arange(per_bin) < kept.sum(1)[:, None]  # the kept ones now come first
            picked = np.take_along_axis(keys, take, 1)
            out["index"][:, b] = np.where(kept, picked & _LOW31, -1)
            out["value"][:, b] = np.where(kept, np.take_along_axis(value.reshape(channels, -1), take, 1), np.nan)
            out["position"][:, b] = np.where(kept, np.take_along_axis(position.reshape(channels, -1), take, 1), -1)
            has = member.any(1)
            low, high = member.argmax(1), bins - 1 - member[:, ::-1].argmax(1)
            out["count"][:, b] = (counts * member).sum(1)
            out["value_range"][has, b] = np.stack([edges[rows, low], edges[rows, high + 1]], 1)[has]
            fractions = np.stack([above[rows, high], above[rows, low] + counts[rows, low]], 1) / np.maximum(total, 1)[:, None]
            out["fraction_range"][has, b] = fractions[has]
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"histogram.{k}": v for k, v in self.histogram.state_dict().items()}
        state.update(key=self.key, payload=self.payload)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.histogram.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("histogram.")})
        self.key, self.payload = (state[name].to(self.key.device) for name in ("key", "payload"))
