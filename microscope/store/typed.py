"""Typed records: dataclasses written as JSON (or .npz arrays) and checked field by field when read.

`JsonRecord` subclasses are plain dataclasses with a `FORMAT` number. `to_json()` writes the fields
plus {"format": FORMAT}; `from_json()` checks the format and every field against its type hint
(int, float, str, bool, None, Any, list[T], tuple[T, ...], dict[str, T], unions, nested
dataclasses) and raises `RecordError` with the first problem - a reader never trusts a record of an
unknown format or with a field of the wrong kind, and never falls back to a guess.

`ArrayRecord` subclasses hold numpy arrays; `ARRAYS` names each one's dtype kind and dimensions,
and `check()` adds the shape rules between them.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar

import numpy as np


class RecordError(ValueError):
    """A stored record that cannot be trusted: unknown format, missing or mistyped field, bad array."""


def to_json(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_json(kind: Any, value: Any, where: str = "record") -> Any:
    """`value` checked (and converted: lists to tuples, dicts to dataclasses) as type `kind`."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if kind is type(None):
        if value is not None:
            raise RecordError(f"{where} must be null, not {_name(value)}")
        return None
    if origin in (typing.Union, types.UnionType):
        problems = []
        for option in typing.get_args(kind):
            try:
                return from_json(option, value, where)
            except RecordError as error:
                problems.append(str(error))
        raise RecordError(problems[-1] if len(problems) == 1 else f"{where} has an unexpected {_name(value)}")
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, not {_name(value)}")
        return _dataclass(kind, value, where)
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise RecordError(f"{where} must be {kind.__name__}, not {_name(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where} must be an integer, not {_name(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, not {_name(value)}")
        return float(value)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, not {_name(value)}")
        args = typing.get_args(kind)
        item = args[0] if args else Any
        items = [from_json(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, not {_name(value)}")
        item = typing.get_args(kind)[1]
        return {key: from_json(item, v, f"{where}.{key}") for key, v in value.items()}
    if kind is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, not {_name(value)}")
        return value
    raise TypeError(f"from_json cannot check type {kind!r}")  # a schema bug, not a damaged file


def _dataclass(kind, value: dict, where: str):
    hints = typing.get_type_hints(kind)
    values = {}
    for field in dataclasses.fields(kind):
        if not field.init:
            continue
        if field.name not in value:
            if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
                continue
            raise RecordError(f"{where}.{field.name} is missing")
        values[field.name] = from_json(hints[field.name], value[field.name], f"{where}.{field.name}")
    return kind(**values)


def _name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class JsonRecord:
    """Base of the store's JSON records (subclasses are dataclasses)."""

    FORMAT: ClassVar[int] = 1

    def to_json(self) -> dict:
        return {"format": self.FORMAT, **to_json(self)}

    @classmethod
    def from_json(cls, data: Any):
        if not isinstance(data, dict):
            raise RecordError(f"expected a JSON object, found {_name(data)}")
        found = data.get("format")
        if found != cls.FORMAT:
            raise RecordError(f"format {found!r}, but this microscope reads format {cls.FORMAT} of {cls.__name__}")
        return _dataclass(cls, {k: v for k, v in data.items() if k != "format"}, cls.__name__)


class ArrayRecord:
    """Base of the store's array records (.npz; subclasses are dataclasses of np.ndarray fields).

    ARRAYS: name -> (dtype kinds, ndim), e.g. ("f", 2) for a 2-d float array; fields not in
    ARRAYS are optional arrays checked by `check()` if present. FORMAT is stored as an array too.
    """

    FORMAT: ClassVar[int] = 1
    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {}
    COMPRESS: ClassVar[bool] = True  # zlib level 1; False for big temporary state

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"format": np.array(self.FORMAT)}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                arrays[field.name] = value
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]):
        found = arrays.get("format")
        if found is None or found.shape != () or int(found) != cls.FORMAT:
            raise RecordError(f"format {None if found is None else found.tolist()!r}, but this microscope "
                              f"reads format {cls.FORMAT} of {cls.__name__}")
        values = {}
        for field in dataclasses.fields(cls):
            array = arrays.get(field.name)
            spec = cls.ARRAYS.get(field.name)
            if array is None:
                if spec is not None:
                    raise RecordError(f"{cls.__name__} has no array {field.name!r}")
                continue
            if spec is not None:
                kinds, ndim = spec
                if array.dtype.kind not in kinds or array.ndim != ndim:
                    raise RecordError(f"{cls.__name__}.{field.name} is a {array.ndim}-d {array.dtype} array, "
                                      f"expected {ndim}-d of kind {kinds!r}")
            values[field.name] = array
        record = cls(**values)
        record.check()
        return record

    def check(self) -> None:
        """Shape rules between arrays; raise RecordError."""
