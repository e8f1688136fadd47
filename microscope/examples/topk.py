"""The k best images per channel, kept on the device and merged batch by batch.

An image's score for a channel is one number (its maximum over spatial positions, for example), so
an image appears at most once per channel. Each batch is merged into the kept (channels, k) arrays
by one torch.topk over k + batch candidates - no Python loop over images or channels.

Ties are broken by the lower dataset index, which makes the result a function of the dataset alone
(not of batch size, order, or where a run was resumed). Score and index are packed into one int64
sort key - the float's bits made order-preserving in the high 32 bits, the complement of the index
in the low 32 - so keys are unique, topk's choice is exact, and score and index unpack from it.
"""
from __future__ import annotations

from typing import Callable

import torch

_LOW31 = 0x7FFFFFFF


def pack(scores: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered as (score, then lower index first); indices must lie in [-1, 2**31 - 1)."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0: equal scores, equal bits
    ordered = torch.where(bits < 0, bits ^ _LOW31, bits)  # negative floats count down as their bits go up
    return (ordered.to(torch.int64) << 32) | (_LOW31 - indices.to(torch.int64))


def unpack(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ordered = (keys >> 32).to(torch.int32)
    scores = torch.where(ordered < 0, ordered ^ _LOW31, ordered).view(torch.float32)
    return scores, _LOW31 - (keys & 0xFFFFFFFF)


class TopExamples:
    """Highest scores per channel, with the image index and a payload (the argmax position)."""

    def __init__(self, channels: int, k: int, device: torch.device | str = "cpu", sync_free: bool = False):
        self.k, self.sync_free = k, sync_free  # sync_free: the payloads of every pair, no read-back (a GPU)
        empty = torch.full((channels, k), float("-inf"), device=device)
        self.key = pack(empty, torch.full((channels, k), -1, dtype=torch.int64, device=device))
        self.position = torch.full((channels, k), -1, dtype=torch.int64, device=device)

    @property
    def values(self) -> torch.Tensor:
        return unpack(self.key)[0]

    @property
    def index(self) -> torch.Tensor:
        return unpack(self.key)[1]

    def update(self, scores: torch.Tensor, indices: torch.Tensor, locate: Callable) -> None:
        """scores: (batch, channels); indices: (batch,) dataset indices.

        `locate(rows, channels)` gives the payload (the argmax position) of batch rows x channels; it
        is only asked for the few entries that make it into the top k (sync_free: for every kept one).
        """
        key = torch.cat([self.key, pack(scores.t(), indices[None, :])], dim=1)
        self.key, best = torch.topk(key, self.k, dim=1, sorted=True)
        position = self.position.gather(1, best.clamp(max=self.k - 1))
        if self.sync_free:  # located for every kept pair, new or not, then chosen
            channel = torch.arange(best.shape[0], device=best.device)[:, None].expand_as(best)
            found = locate((best - self.k).clamp(min=0).reshape(-1), channel.reshape(-1)).view_as(best)
            self.position = torch.where(best >= self.k, found.to(torch.int64), position)
            return
        channel, rank = torch.nonzero(best >= self.k, as_tuple=True)
        if channel.numel():
            position[channel, rank] = locate(best[channel, rank] - self.k, channel).to(torch.int64)
        self.position = position

    def merge(self, other: "TopExamples") -> None:
        """Fold in another part's top k: the top k of a union are among the top k of each part."""
        key = torch.cat([self.key, other.key.to(self.key.device)], dim=1)
        position = torch.cat([self.position, other.position.to(self.position.device)], dim=1)
        self.key, best = torch.topk(key, self.k, dim=1, sorted=True)
        self.position = position.gather(1, best)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"key": self.key, "position": self.position}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.key, self.position = (state[name].to(self.key.device) for name in ("key", "position"))
