"""Filling a network from a state_dict file, with one line naming the first entry that does not fit."""
from __future__ import annotations

import torch
from torch import nn

from microscope.errors import UsageError


def load_state_dict(module: nn.Module, path: str, name: str, drop: tuple[str, ...] = (),
                    wanted: str | None = None) -> None:
    """Fill `module` from a state_dict file; a file that does not fit is one line naming its first misfit.
    `drop`: prefixes of entries the file has and the module does not need; `wanted`: the file to pass instead
    (default: "<name>'s weights")."""
    wanted = wanted or f"{name}'s weights"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickles of other things, corrupt files
        raise UsageError(f"weights file {path} is not a readable state_dict ({type(error).__name__}); "
                         f"pass {wanted} with --weights") from None
    if not isinstance(state, dict):
        raise UsageError(f"weights file {path} holds no state_dict; pass {wanted} with --weights")
    state = {key: value for key, value in state.items() if not key.startswith(drop or ("\0",))}
    expected = module.state_dict()
    for key in expected:
        if key not in state:
            raise UsageError(f"weights file {path} does not fit {name}: it has no {key} (first of "
                             f"{sum(k not in state for k in expected)} missing); pass {wanted} with --weights")
        if tuple(state[key].shape) != tuple(expected[key].shape):
            raise UsageError(f"weights file {path} does not fit {name}: {key} has shape {tuple(state[key].shape)}, "
                             f"expected {tuple(expected[key].shape)}; pass {wanted} with --weights")
    extra = [key for key in state if key not in expected]
    if extra:
        raise UsageError(f"weights file {path} does not fit {name}: it has {extra[0]}, which {name} does not "
                         f"(first of {len(extra)}); pass {wanted} with --weights")
    module.load_state_dict(state, strict=True)
