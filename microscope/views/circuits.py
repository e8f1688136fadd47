"""The circuits view: every unit's strongest inputs and outputs, read through expanded weights.

For each pair of consecutive layers (as the site lists them: conv2 -> inception_3a -> 3b -> ... ->
logits) one job computes the expanded weights of every unit of the later layer from every unit of
the earlier one (microscope/circuits) and stores them under the later layer (CircuitArrays, then
CircuitResult, last). A layer asked for needs its incoming pair (its inputs) and its outgoing pair
(its outputs, into the next layer). The first layer has no previous layer: its pages say so.

On a unit page: the strongest excitatory and inhibitory inputs as small red/blue maps beside the
input unit's feature visualization, the units of the next layer it excites and inhibits most, and
for the last block and the logits, the classes. On the layer page: a `weights.npz` to download
(float16) and a link from every tile to its circuit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import logging

import click

from microscope.errors import UsageError
from microscope.jobs import hash_json, make_job
from microscope.selection import MAIN_KINDS, neighbours
from microscope.store import CircuitArrays, CircuitRefusal, CircuitResult, Store
from microscope.view import Panel, UnitPage, View, ViewPlan

log = logging.getLogger("microscope.build")
VERSION = 1  # bump when the computation changes: stored weights are then recomputed


@dataclass(frozen=True)
class Settings:
    top: int = 12  # inputs kept and shown per sign

    def __post_init__(self):
        if self.top < 1:
            raise UsageError(f"--circuit-top must be at least 1, got {self.top}")


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


class CircuitsView(View):
    name = "circuits"
    title = "Circuit"
    needs = ("network",)
    missing = "No circuits were computed for this layer (run the circuits stage)."
    budget = {"circuit section of the page (24 inputs, 24 outputs)": 10_000, "map strip": 600,
              "unit.json block": 1_400}

    def options(self):
        return [click.option("--circuit-top", "circuit_top", default=12, show_default=True,
                             type=click.IntRange(min=1), help="Circuits: strongest inputs kept per sign.")]

    def settings(self, values: dict) -> Settings:
        return Settings(top=values.get("circuit_top", 12))

    def default_settings(self) -> Settings:
        return Settings()

    def applies(self, layer) -> bool:
        return layer.kind in MAIN_KINDS + ("logits",)  # the chain of layers; not branches or SAE features

    # Plan and run --------------------------------------------------------------------------------

    def pairs(self, request, session) -> list[tuple[str, str]]:
        """The layer pairs the request needs: each layer's incoming and outgoing pair."""
        layers = session.network().spec.layers
        found = []
        for layer in request.layers:
            previous, following = neighbours(layers, layer)
            found += [(previous, layer)] if previous else []
            found += [(layer, following)] if following else []
        return list(dict.fromkeys(found))

    def check(self, request, session) -> None:
        from microscope.circuits.linear import NotLinear

        for previous, layer in self.pairs(request, session):  # an unknown layer: one line now
            refused = linear_pair(session, previous, layer)
            if isinstance(refused, NotLinear):
                log.warning("%s - its pages say so; the build goes on without it", refused)

    def plan(self, request, session) -> ViewPlan:
        from microscope.circuits.linear import NotLinear

        settings: Settings = request.settings.get(self.name) or Settings()
        network, store = session.network(), session.store
        catalogue = store.read_model(network.spec.name)
        jobs, done, refusals = [], 0, 0
        for previous, layer in self.pairs(request, session):
            spec = {"model": network.spec.name, "weights_id": network.weights_id, "previous": previous,
                    "layer": layer, "top": settings.top, "version": VERSION}
            key = hash_json(spec, digits=32)
            refused = isinstance(linear_pair(session, previous, layer), NotLinear)
            stored = read_refusal(store, network.spec.name, layer, key) if refused else \
                read_pair(store, network.spec.name, layer, key)
            if stored is not None:
                done += 1
                continue
            refusals += refused
            jobs.append(make_job(self.name, "weights", layer, {**spec, "key": key},
                                 work=catalogue.layer(layer).channels, gpu=not refused))
        return ViewPlan(jobs, todo=len(jobs), done=done, what="layer pairs", refused=refusals)

    def run(self, job, session, report) -> None:
        from microscope.circuits.expanded import expanded_weights
        from microscope.circuits.linear import GLOBAL, NotLinear

        store, spec = session.store, job.spec
        model, layer = spec["model"], spec["layer"]
        result_file, refusal_file = store.circuit_result_file(model, layer), store.circuit_refusal_file(model, layer)
        weights_file = store.circuit_weights_file(model, layer)
        pair = linear_pair(session, spec["previous"], spec["layer"])
        if isinstance(pair, NotLinear):  # one record, so that the pages say why (and a rerun skips it)
            result_file.unlink(missing_ok=True)
            store.write(refusal_file, CircuitRefusal(
                key=spec["key"], model=spec["model"], weights_id=spec["weights_id"], previous=spec["previous"],
                layer=spec["layer"], reason=str(pair)))
            return
        source = store.read_model(spec["model"]).layer(spec["previous"])
        found = expanded_weights(pair, source.channels, source.height, spec["top"], report=report)
        refusal_file.unlink(missing_ok=True)
        stamp = store.write(weights_file, CircuitArrays(
            sums=found.sums, top_index=found.top_index, top_value=found.top_value, maps=found.maps, box=found.box))
        store.write(result_file, CircuitResult(
            key=spec["key"], model=spec["model"], weights_id=spec["weights_id"], previous=spec["previous"],
            layer=spec["layer"], target=pair.target, top=spec["top"], input_size=found.input_size,
            centre=list(found.centre), local=pair.field != GLOBAL,
            linearised=pair.replaced, files={weights_file.name: stamp}))

    # The site ------------------------------------------------------------------------------------

    def read(self, store, model, layer):
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

    def units(self, data: LayerCircuits) -> set[int]:
        if data.incoming is not None:
            return set(range(data.incoming.arrays.top_index.shape[0]))
        if data.outgoing is not None:
            return set(range(data.outgoing.arrays.sums.shape[1]))
        return set()  # refused both ways: the other views' units carry the note

    def unit_panel(self, data: LayerCircuits, unit: int, page: UnitPage) -> Panel:
        from microscope.circuits.panel import unit_panel

        return unit_panel(data, unit, page)

    def layer_panel(self, data: LayerCircuits, page) -> Panel | None:
        from microscope.circuits.panel import layer_panel

        return layer_panel(data, page)

    def layer_json(self, data: LayerCircuits) -> dict:
        return {"previous": data.previous, "next": data.next,
                "linearised": data.incoming.result.linearised if data.incoming else None,
                **({"refused": data.refused_in} if data.refused_in else {})}


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


def linear_pair(session, previous: str, layer: str):
    """The linearised network between the two layers, or the NotLinear saying why there is none; once."""
    from microscope.circuits.linear import NotLinear, linearise

    def make():
        try:
            return linearise(session.network(), previous, layer)
        except NotLinear as refused:
            return refused

    return session.memo(("linear pair", previous, layer), make)


VIEW = CircuitsView()
