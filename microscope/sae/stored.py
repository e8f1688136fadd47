"""A layer's stored SAE and the names of its derived layers (no torch: the site reads it too)."""
from __future__ import annotations

from dataclasses import dataclass

from microscope.store import LayerInfo, ModelRecord, SaeResult, SaeWeights, Store

SUFFIX, PRE_SUFFIX = "_sae", "_sae_pre"  # inception_3b -> inception_3b_sae (features), inception_3b_sae_pre


def sae_layer(source: str) -> str:
    return source + SUFFIX


def read_sae(store: Store, model: str, layer: str, weights_id: str) -> tuple[SaeResult, SaeWeights] | None:
    """The layer's SAE for these weights, checked; None if there is none (or it is damaged)."""
    result = store.read(store.sae_result_file(model, layer, weights_id), SaeResult)
    if result is None or result.weights_id != weights_id or result.layer != layer:
        return None
    weights_file = store.sae_weights_file(model, layer, weights_id)
    weights = store.read(weights_file, SaeWeights, result.files.get(weights_file.name))
    return None if weights is None else (result, weights)


@dataclass
class LayerSae:
    """An SAE as one layer of the site sees it: the layer of its features, or the layer it encodes."""

    role: str  # "features" (the page of an SAE feature) or "neurons" (of the layer it encodes)
    source: str  # the layer the SAE encodes
    sae_layer: str
    result: SaeResult
    weights: SaeWeights

    @property
    def units(self) -> int:
        return self.result.features if self.role == "features" else self.result.width


def read_layer(store: Store, model: ModelRecord, layer: LayerInfo) -> LayerSae | None:
    """The SAE this layer's pages show: its own features' (an `<L>_sae` layer) or the one encoding it."""
    if layer.kind == "sae" and layer.name.endswith(SUFFIX):
        source = layer.name[:-len(SUFFIX)]
        found = read_sae(store, model.name, source, model.weights_id)
        return None if found is None else LayerSae("features", source, layer.name, *found)
    if layer.kind not in ("conv", "block") or not store.sae_layer_dir(model.name, layer.name).is_dir():
        return None
    found = read_sae(store, model.name, layer.name, model.weights_id)
    return None if found is None else LayerSae("neurons", layer.name, sae_layer(layer.name), *found)
