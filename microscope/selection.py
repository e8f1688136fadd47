"""What a user picks on the command line: layers, units and objectives, parsed and checked once.

The syntax is checked as the options are read (microscope/cli.py's click types call these); what
depends on the model (a layer's name, its number of channels) is checked when the plan is made,
before any work starts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import click

from microscope.errors import UsageError

MAIN_KINDS = ("conv", "block")  # what `--layers all` means: the layers Microscope shows


@dataclass(frozen=True)
class Units:
    """`all`, `7`, `0-63` or `3,5,9-12`: ranges of unit numbers, checked against a layer later."""

    ranges: tuple[tuple[int, int], ...] | None  # None: every unit

    @classmethod
    def parse(cls, text: str) -> "Units":
        text = str(text).strip()
        if text.lower() == "all":
            return cls(None)
        ranges = []
        for part in text.split(","):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not match:
                raise UsageError(f"cannot read units {text!r}: write e.g. 0-63, 3,5,9-12 or all")
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            if last < first:
                raise UsageError(f"unit range {part.strip()!r} runs backwards; write it low-high")
            ranges.append((first, last))
        return cls(tuple(ranges))

    def resolve(self, channels: int, layer: str) -> list[int]:
        """Sorted unit numbers of a layer with `channels` units; one clear line if one is out of range."""
        if self.ranges is None:
            return list(range(channels))
        highest = max(last for _, last in self.ranges)
        if highest >= channels:
            raise UsageError(f"unit {highest} is out of range: valid units of {layer} are 0-{channels - 1}")
        return sorted({unit for first, last in self.ranges for unit in range(first, last + 1)})


def parse_layers(text: str) -> tuple[str, ...] | None:
    """`all` (None) or comma-separated layer names, without repeats."""
    if text.strip() == "all":
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise UsageError("--layers is empty; pass 'all' or comma-separated layer names")
    return names


def resolve_layers(network, names: tuple[str, ...] | None) -> list[str]:
    """The layers to work on; an unknown name is one line naming the valid ones."""
    if names is None:  # 'all': the model's layers and the SAEs trained on them
        return [layer.name for layer in network.layers if layer.kind in MAIN_KINDS + ("sae",)]
    return list(dict.fromkeys(network.layer(name).name for name in names))  # unknown: one line naming the valid ones


def layer_chain(layers) -> list[str]:
    """The layers as the site lists them, in network order: every conv and block layer, then the logits.
    Consecutive ones are what "previous layer" means for circuits. `layers`: LayerSpecs or LayerInfos."""
    return [layer.name for layer in layers if layer.kind in MAIN_KINDS or layer.kind == "logits"]


def neighbours(layers, name: str) -> tuple[str | None, str | None]:
    """(previous, next) of `name` in the chain; None at the ends, or for a layer not in it (a branch)."""
    chain = layer_chain(layers)
    if name not in chain:
        return None, None
    at = chain.index(name)
    return (chain[at - 1] if at else None), (chain[at + 1] if at + 1 < len(chain) else None)


def parse_objectives(text: str, known: dict) -> tuple[str, ...]:
    """Comma-separated objective names, each one of `known`, in the order given, without repeats."""
    names = tuple(dict.fromkeys(name.strip() for name in str(text).split(",") if name.strip()))
    if not names:
        raise UsageError(f"no objective given; choose from: {', '.join(known)}")
    for name in names:
        if name not in known:
            raise UsageError(f"unknown objective {name!r}; choose from: {', '.join(known)}")
    return names


# ------------------------------------------------------------------------------------------------
# The same checks as click parameter types: a bad value is reported as the option's own error.


class _Checked(click.ParamType):
    def __init__(self, parse, name: str):
        self.parse, self.name = parse, name

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except UsageError as error:
            self.fail(str(error), param, ctx)


UNITS = _Checked(Units.parse, "units")
LAYERS = _Checked(parse_layers, "layers")
