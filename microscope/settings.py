"""One declaration per setting.

A view's settings are one frozen dataclass deriving from `Settings`, each field declared with
`setting(...)`: its default, its command-line flag, its help, its range or choices, and whether it
changes what is stored (`keyed`) or only how fast it is made. Everything else is made from that one
declaration:

- `options()`: the click options of `build` and of the view's own command (the flag's destination is
  the field's name, so a setting has one name from the command line to the stored record);
- the checks: `__post_init__` refuses a value out of range in one line naming the flag, whoever made
  the record (the command line, a notebook, a test);
- `from_values(values)`: the record from a command's values (absent ones take their defaults);
- `keyed()`: the settings that change stored results, for a view's store key;
- presets (the preview's): `dataclasses.replace(settings, **changes)`, checked again;
- `renamed_flags`: the older spellings of flags (`old=`), still accepted with a line naming the new one.
"""
from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from microscope.errors import UsageError

Number = int | float


@dataclass(frozen=True)
class Option:
    """How a setting looks on the command line, and what it accepts."""

    flag: str  # e.g. "--top-k"
    help: str
    low: Number | None = None  # the least value accepted
    high: Number | None = None  # the most
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None  # text -> value, raising UsageError (e.g. a comma-separated list)
    old: tuple[str, ...] = ()  # older spellings of the flag: still accepted, with a line naming the new one
    keyed: bool = True  # changes the stored results (False: only how fast or where they are made)
    metavar: str | None = None
    show_default: bool = True


def setting(default: Any, flag: str, help: str, **how) -> Any:
    """A field of a `Settings` record with its option (see `Option`). `default` may be a callable
    taking no argument for a mutable default."""
    option = Option(flag, help, **how)
    if callable(default):
        return field(default_factory=default, metadata={"option": option})
    return field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class Settings:
    """Base of every view's settings: the checks and the command line come from its fields' declarations."""

    def __post_init__(self):
        for name, option, _ in declared(type(self)):
            value = getattr(self, name)
            if option.parse is not None and isinstance(value, str) and _kind(type(self), name) is not str:
                value = option.parse(value)  # a caller other than the command line gave the text
                object.__setattr__(self, name, value)
            check_value(option, value)

    @classmethod
    def options(cls) -> list[Callable]:
        """The click option decorators of every declared field."""
        return [click_option(cls, name, option, default) for name, option, default in declared(cls)]

    @classmethod
    def from_values(cls, values: dict) -> "Settings":
        """The record from a command's option values (by field name); absent or None ones keep the default."""
        given = {name: values[name] for name, _, _ in declared(cls) if values.get(name) is not None}
        return cls(**given)

    def keyed(self) -> dict:
        """The settings that change what is stored, as plain values (for a store key)."""
        return {name: getattr(self, name) for name, option, _ in declared(type(self)) if option.keyed}


def declared(cls: type) -> list[tuple[str, Option, Any]]:
    """(field name, its Option, its default) of every declared field of a settings class."""
    found = []
    for item in dataclasses.fields(cls):
        option = item.metadata.get("option")
        if option is not None:
            default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
            found.append((item.name, option, default))
    return found


def check_value(option: Option, value: Any) -> None:
    """One line naming the flag for a value the option does not accept (None: the default, computed later)."""
    if value is None:
        return
    if option.choices is not None and value not in option.choices:
        raise UsageError(f"{option.flag} must be one of: {', '.join(option.choices)}; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if value != value:  # NaN
        raise UsageError(f"{option.flag} must be a number, got {value}")
    if option.low is not None and value < option.low:
        raise UsageError(f"{option.flag} must be at least {option.low}, got {value}")
    if option.high is not None and value > option.high:
        raise UsageError(f"{option.flag} must be at most {option.high}, got {value}")


def _kind(cls: type, name: str) -> type:
    """The field's type, None taken out of an optional one (int | None -> int)."""
    hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))[name]
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return typing.get_origin(hint) or hint


class _Parsed(click.ParamType):
    """A click type from a setting's own parser (its UsageError becomes click's one-line error)."""

    def __init__(self, option: Option):
        self.option, self.name = option, option.metavar or "TEXT"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.option.parse(value)
        except UsageError as error:
            self.fail(str(error), param, ctx)


def click_type(cls: type, name: str, option: Option) -> click.ParamType:
    kind = _kind(cls, name)
    if option.parse is not None:
        return _Parsed(option)
    if option.choices is not None:
        return click.Choice(list(option.choices))
    bounded = option.low is not None or option.high is not None
    if kind is int:
        return click.IntRange(min=option.low, max=option.high) if bounded else click.INT
    if kind is float:
        return click.FloatRange(min=option.low, max=option.high) if bounded else click.FLOAT
    return click.STRING


def click_option(cls: type, name: str, option: Option, default: Any) -> Callable:
    if isinstance(default, tuple):  # as it would be typed: the option's parser reads it like any value
        default = ",".join(map(str, default))
    return click.option(option.flag, name, default=default, type=click_type(cls, name, option), help=option.help,
                        show_default=option.show_default and default is not None, metavar=option.metavar)


def renamed_flags(classes) -> dict[str, str]:
    """Older spelling -> the flag now, for every declared field of these settings classes."""
    return {old: option.flag for cls in classes for _, option, _ in declared(cls) for old in option.old}


def renamed_arguments(arguments: list[str], renamed: dict[str, str], say: Callable[[str], None]) -> list[str]:
    """The arguments with every older flag (`renamed`: old -> new) spelled as now, also in --flag=value
    form; `say` is told of each older flag found."""
    out = []
    for word in arguments:
        flag, eq, value = word.partition("=")
        if flag in renamed:
            say(f"note: {flag} is now {renamed[flag]}; the old name still works for now")
            word = renamed[flag] + eq + value
        out.append(word)
    return out


__all__ = ["Option", "Settings", "check_value", "declared", "renamed_arguments", "renamed_flags", "setting"]
