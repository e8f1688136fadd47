"""`--labels-file`: your names for units (layer -> unit -> "short label" or {label, note}), as YAML.

Read safely (no Python tags, no FIFO hangs) and checked node by node, so that a mistake is one line
naming the file and the line, and duplicates - which YAML would silently resolve - are refused.
"""
from __future__ import annotations

import re

import yaml

from microscope.errors import UsageError
from microscope.data.files import read_text_file


def read_unit_labels(path: str | None) -> dict | None:
    """labels.yaml: layer -> unit -> "short label" or {label, note}; else one line naming the file and line."""
    if path is None:
        return None
    text = read_text_file(path, "labels file", "a UTF-8 YAML file of layer -> unit -> label")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = {} if node is None else loader.construct_document(node)
        if node is not None:
            _check(loader, node, path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"labels file {path}{where} is not valid YAML ({problem}); "
                         "expected layer -> unit -> label") from None
    except (ValueError, RecursionError) as error:  # a date like 2001-02-30, an int of 5000 digits, deep nesting
        raise UsageError(f"labels file {path} is not usable YAML ({str(error).splitlines()[0]}); "
                         "expected layer -> unit -> label") from None
    finally:
        loader.dispose()
    return data


def _check(loader, node, path: str) -> None:
    """Every layer maps unit numbers (0 to 2**31 - 1, each once) to text or {label, note}, checked on
    the parsed nodes so that the message names the line."""
    def fail(at, problem: str):
        raise UsageError(f"labels file {path} line {at.start_mark.line + 1}: {problem}; "
                         "expected layer -> unit -> label, e.g. 'mixed3b: {379: curve}'")

    if not isinstance(node, yaml.MappingNode):
        fail(node, "the file is not a mapping of layer names")
    layers = set()  # keys are hashable: construct_document refused any other
    for layer_node, units in node.value:
        layer = loader.construct_object(layer_node, deep=True)
        if layer in layers:  # YAML would silently keep the last
            fail(layer_node, f"layer {layer!r} is listed twice")
        layers.add(layer)
        if not isinstance(units, yaml.MappingNode):
            fail(units, f"layer {layer!r} must map unit numbers to labels")
        seen: set[int] = set()
        for unit_node, entry in units.value:
            unit = loader.construct_object(unit_node, deep=True)
            if isinstance(unit, str) and re.fullmatch(r"\s*[0-9]+\s*", unit):
                unit = int(unit) if len(unit.strip().lstrip("0")) <= 10 else 2**31
            if isinstance(unit, bool) or not isinstance(unit, int):
                fail(unit_node, f"unit {unit_node.value!r} of layer {layer!r} is not a unit number")
            if not 0 <= unit < 2**31:
                fail(unit_node, f"unit {unit_node.value} of layer {layer!r} is "
                                f"{'negative' if unit < 0 else 'too large'}")
            if unit in seen:  # also "1" and 0x1
                fail(unit_node, f"unit {unit} of layer {layer!r} is labelled twice")
            seen.add(unit)
            if isinstance(entry, yaml.SequenceNode) or entry.tag == "tag:yaml.org,2002:null":
                fail(entry, f"the label of unit {unit} of layer {layer!r} must be text or {{label, note}}")
