"""The layer catalogue: every layer a user can pick, with what the built network says about it."""
from __future__ import annotations

import torch

from microscope.network.loaded import Network
from microscope.network.receptive_field import Field, union, graph_fields
from microscope.store import LayerInfo, ModelRecord


def catalogue(network: Network, names: list[str] | None = None, size: int | None = None) -> list[LayerInfo]:
    """The entries of `names` (default: every layer of the model), with channels, grid and
    receptive field measured on the truncated graph at `size` px (default: the model's input size).

    Fields are walked on the same graph the stages run (`Network.extractor(names)`, cached), so
    asking for a pass's own layers costs no extra tracing.
    """
    names = list(names) if names is not None else [layer.name for layer in network.layers]
    size = size or network.spec.input_size
    extractor = network.extractor(names)
    node_fields = graph_fields(extractor.graph_module)
    with torch.inference_mode():
        shapes = {k: v.shape for k, v in extractor(torch.zeros(1, 3, size, size, device=network.device)).items()}
    infos = []
    for layer in extractor.layers:
        nodes = layer.nodes or network.layer(network.derived[layer.name].source).nodes  # derived: position-wise
        shape, field = shapes[layer.name], union([node_fields[node] for node in nodes])
        local = isinstance(field, Field)
        infos.append(LayerInfo(
            name=layer.name, kind=layer.kind, channels=int(shape[1]),
            height=int(shape[2]) if len(shape) == 4 else 1, width=int(shape[3]) if len(shape) == 4 else 1,
            stride=field.stride if local else None, rf_size=field.size if local else None,
            rf_offset=field.offset if local else None, pre_relu=layer.pre_relu, description=layer.description,
        ))
    return infos


def model_record(network: Network) -> ModelRecord:
    """model.json: the whole catalogue, the weights' identity and the class names."""
    spec = network.spec
    return ModelRecord(name=spec.name, title=spec.title, description=spec.description,
                       weights_id=network.weights_id, input_size=spec.input_size,
                       categories=list(spec.categories), layers=catalogue(network))
