"""What every command-line option refuses, whatever its own type: checks the click types lack.

Values that a shell can send but no option means - an empty string, NaN or infinity, a number
beyond 32 bits, a NUL byte - are refused while the arguments are read: one line, exit code 2, before
any model is loaded.
"""
from __future__ import annotations

import math
import re

import click


LARGEST = 2**31 - 1  # the largest number any option takes (indices, seeds and sizes are 32-bit)


class Guarded:
    """Mixed into an option's own type (see `guard_options`): an empty value, a NUL byte, a number that is
    not finite (nan, inf) and one too large for the code that uses it are refused."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("the value is empty; give one, or leave the option out for its default", param, ctx)
        if isinstance(value, str) and "\x00" in value:  # not from a shell, but from a script or a config
            self.fail("the value holds a NUL byte", param, ctx)
        found = super().convert(value, param, ctx)
        if isinstance(found, float) and not math.isfinite(found):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if isinstance(found, int) and not isinstance(found, bool) and abs(found) > LARGEST:
            self.fail(f"{value} is too large; the most it can be is {LARGEST}", param, ctx)
        return found


_GUARDED: dict[type, type] = {}


def guard_options(group: click.Group) -> None:
    """Give every text and number option of every command the checks of `Guarded` (a copy of its
    type with them added, so --help and the type's own checks stay as they are)."""
    kinds = (click.types.StringParamType, click.types.IntParamType, click.types.FloatParamType)
    for command in group.commands.values():
        for param in command.params:
            kind = param.type
            if isinstance(param, click.Option) and isinstance(kind, kinds) and not isinstance(kind, Guarded):
                cls = type(kind)
                if cls not in _GUARDED:
                    _GUARDED[cls] = type(f"Guarded{cls.__name__}", (Guarded, cls), {})
                guarded = _GUARDED[cls].__new__(_GUARDED[cls])
                guarded.__dict__.update(vars(kind))
                param.type = guarded


def check_device(ctx, param, value):
    if value is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip()):
        raise click.BadParameter(f"unknown device {value!r}; use auto, cpu, cuda or cuda:N", ctx, param)
    return value if value is None else value.strip()
