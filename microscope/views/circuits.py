"""The circuits view's compute half: every unit's strongest inputs and outputs, through expanded weights.

For each pair of consecutive layers (as the site lists them: conv2 -> inception_3a -> 3b -> ... ->
logits) one job computes the expanded weights of every unit of the later layer from every unit of
the earlier one (microscope/circuits) and stores them under the later layer (CircuitArrays, then
CircuitResult, last). A layer asked for needs its incoming pair (its inputs) and its outgoing pair
(its outputs, into the next layer). The first layer has no previous layer: its pages say so.
The show half (unit and layer panels) is microscope/circuits/panel.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from microscope.circuits.expanded import expanded_weights
from microscope.circuits.linear import GLOBAL, NotLinear, linearise
from microscope.circuits.panel import SHOWN
from microscope.circuits.stored import read_pair, read_refusal
from microscope.jobs import hash_json, make_job
from microscope.selection import neighbours
from microscope.settings import Settings, setting
from microscope.store import CircuitArrays, CircuitRefusal, CircuitResult
from microscope.view import Computed, ViewPlan

log = logging.getLogger("microscope.build")
VERSION = 1  # bump when the computation changes: stored weights are then recomputed


@dataclass(frozen=True)
class CircuitSettings(Settings):
    top: int = setting(12, "--circuit-top", "Circuits: strongest inputs kept per sign.", low=1)


class CircuitsView(Computed):
    shown = SHOWN
    settings_type = CircuitSettings
    needs = ("network",)

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
        for previous, layer in self.pairs(request, session):  # an unknown layer: one line now
            refused = linear_pair(session, previous, layer)
            if isinstance(refused, NotLinear):
                log.warning("%s - its pages say so; the build goes on without it", refused)

    def plan(self, request, session) -> ViewPlan:
        settings: CircuitSettings = request.settings.get(self.name) or CircuitSettings()
        network, store = session.network(), session.store
        catalogue = store.read_model(network.spec.name)
        jobs, done, refusals = [], 0, set()
        for previous, layer in self.pairs(request, session):
            spec = {"model": network.spec.name, "weights_id": network.weights_id, "previous": previous,
                    "layer": layer, **settings.keyed(), "version": VERSION}
            key = hash_json(spec, digits=32)
            refused = isinstance(linear_pair(session, previous, layer), NotLinear)
            stored = read_refusal(store, network.spec.name, layer, key) if refused else \
                read_pair(store, network.spec.name, layer, key)
            if stored is not None:
                done += 1
                continue
            jobs.append(make_job(self.name, "weights", layer, {**spec, "key": key},
                                 work=catalogue.layer(layer).channels, gpu=not refused, pieces=1))
            if refused:
                refusals.add(jobs[-1].key)
        return ViewPlan(jobs, todo=len(jobs), done=done, what="layer pairs", refusals=frozenset(refusals))

    def run(self, job, session, report) -> None:
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


    def store_bytes(self, job, session) -> int:
        """weights.npz as expanded_weights makes it, uncompressed: per unit its sums over every input
        (float64), its 2t strongest inputs (index, value) and their maps (float32) of at most the field's size."""
        pair = linear_pair(session, job.spec["previous"], job.spec["layer"])
        if isinstance(pair, NotLinear):
            return 4096  # refused.json
        catalogue = session.store.read_model(job.spec["model"])
        inputs, units = catalogue.layer(job.spec["previous"]).channels, catalogue.layer(job.spec["layer"]).channels
        side = 1 if pair.field == GLOBAL else pair.field.size
        strongest = 2 * min(job.spec["top"], inputs)
        return units * (inputs * 8 + strongest * (16 + side * side * 4) + 16) + 4096


def linear_pair(session, previous: str, layer: str):
    """The linearised network between the two layers, or the NotLinear saying why there is none; once."""

    def make():
        try:
            return linearise(session.network(), previous, layer)
        except NotLinear as refused:
            return refused

    return session.memo(("linear pair", previous, layer), make)


VIEW = CircuitsView()
