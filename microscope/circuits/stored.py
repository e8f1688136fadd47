"""Stored circuits read back (no torch): a layer's expanded weights from its previous layer and into
its next one, or the refusal saying why the network between them cannot be made linear."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from microscope.selection import neighbours
from microscope.store import CircuitArrays, CircuitRefusal, CircuitResult, LayerInfo, ModelRecord, Store


@dataclass
class Pair:
    result: CircuitResult
    arrays: CircuitArrays
    weights_file: Path  # where the arrays are stored: what the site's images of them are made from


@dataclass
class LayerCircuits:
    layer: str
    previous: str | None
    next: str | None
    incoming: Pair | None  # expanded weights from the previous layer into this one
    outgoing: Pair | None  # from this layer into the next
    refused_in: str | None = None  # why there are no incoming weights (the network between is not linear)
    refused_out: str | None = None


def read_pair(store: Store, model: str, layer: str, key: str | None = None) -> Pair | None:
    """The expanded weights into `layer` (with this key, if given), verified; None if absent or damaged."""
    result = store.read(store.circuit_result_file(model, layer), CircuitResult)
    if result is None or (key is not None and result.key != key):
        return None
    weights_file = store.circuit_weights_file(model, layer)
    arrays = store.read(weights_file, CircuitArrays, result.files.get(weights_file.name))
    return None if arrays is None else Pair(result, arrays, weights_file)


def read_refusal(store: Store, model: str, layer: str, key: str | None = None) -> CircuitRefusal | None:
    """Why `layer` has no expanded weights from its previous layer (with this key, if given), or None."""
    found = store.read(store.circuit_refusal_file(model, layer), CircuitRefusal)
    return None if found is None or (key is not None and found.key != key) else found


def read_circuits(store: Store, model: ModelRecord, layer: LayerInfo) -> LayerCircuits | None:
    """The layer's circuits both ways (or why each is missing); None if it has neither."""
    previous, following = neighbours(model.layers, layer.name)
    if previous is None and following is None:
        return None
    incoming = read_pair(store, model.name, layer.name) if previous else None
    outgoing = read_pair(store, model.name, following) if following else None
    if incoming is not None and incoming.result.previous != previous:
        incoming = None
    refused_in = read_refusal(store, model.name, layer.name) if previous and incoming is None else None
    refused_out = read_refusal(store, model.name, following) if following and outgoing is None else None
    if incoming is None and outgoing is None and refused_in is None and refused_out is None:
        return None
    return LayerCircuits(layer.name, previous, following, incoming, outgoing,
                         refused_in.reason if refused_in and refused_in.previous == previous else None,
                         refused_out.reason if refused_out and refused_out.previous == layer.name else None)
