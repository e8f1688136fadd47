"""A layer's stored SAE and the names of its derived layers (no torch: the site reads it too)."""
from __future__ import annotations

from microscope.store import SaeResult, SaeWeights, Store

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
