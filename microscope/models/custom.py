"""Your own model: `--model path/to/file.py:factory` or `--model package.module:factory`.

The factory takes no arguments and returns an `nn.Module`, or `(module, options)` where options may
hold "preprocessing" (the fields of `spec.Preprocessing`: mean, std, resize, crop, channel_order,
scale), "categories" (class names in logit order), "input_size" (default: the crop, else 224) and
"layers" (name -> fx node name, in network order; `build.py layers --all` on the default list shows the
node names). Without "layers", every ReLU of the graph whose output is a spatial map is a layer, named
by its node ("features.1" -> "features_1"), and a last node with one vector per image is `logits`.
Pre-ReLU twins are found in the graph and kept only where ReLU(twin) equals the layer on a random
input. `--weights` is a state_dict file (or "random"); nothing is downloaded.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import fields, replace
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from microscope.errors import UsageError
from microscope.models.graph import Graph, NodeExtractor, broken_twins, layer_specs
from microscope.models.spec import ModelSpec, Preprocessing
from microscope.models.state_dict import load_state_dict

OPTIONS = {"preprocessing", "categories", "input_size", "layers"}


def is_custom(model: str) -> bool:
    return ":" in model


def canonical(model: str) -> str:
    """FILE.py:factory with FILE absolute (a job may run in another process, folder or machine)."""
    where, _, factory = model.rpartition(":")
    return f"{Path(where).expanduser().resolve()}:{factory}" if where.endswith(".py") else model


def load_factory(model: str):
    where, _, name = model.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise UsageError(f"model file {where} not found; pass --model path/to/file.py:factory")
            module_name = "microscope_custom_" + re.sub(r"\W", "_", str(path.resolve()))
            found = importlib.util.spec_from_file_location(module_name, path)
            code = importlib.util.module_from_spec(found)
            sys.modules[module_name] = code  # dataclasses and pickling look modules up by name
            found.loader.exec_module(code)
        else:
            code = importlib.import_module(where)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's code: any error is theirs to fix
        raise UsageError(f"cannot import {where} for --model {model} ({type(error).__name__}: {error})") from None
    factory = getattr(code, name, None)
    if not callable(factory):
        raise UsageError(f"{where} has no function {name!r}; --model takes FILE.py:factory or package.module:factory")
    return factory


def _made(model: str, factory) -> tuple[nn.Module, dict]:
    try:
        made = factory()
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"the factory of --model {model} failed ({type(error).__name__}: {error})") from None
    module, options = made if isinstance(made, tuple) and len(made) == 2 else (made, {})
    if not isinstance(module, nn.Module):
        raise UsageError(f"the factory of --model {model} returned {type(module).__name__}, not a torch nn.Module")
    if not isinstance(options, dict) or set(options) - OPTIONS:
        raise UsageError(f"the factory of --model {model} returned options other than a dict of "
                         f"{', '.join(sorted(OPTIONS))}")
    return module, options


def _preprocessing(model: str, given: dict | None) -> Preprocessing:
    known = {f.name for f in fields(Preprocessing)}
    if given is None:
        return Preprocessing()
    if set(given) - known:
        raise UsageError(f"preprocessing of --model {model} has unknown fields {sorted(set(given) - known)}; "
                         f"known: {', '.join(sorted(known))}")
    return Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def _found_layers(graph: Graph, options: dict, shapes: dict) -> list[tuple]:
    """(name, node, kind, description) of the layers to show."""
    if "layers" in options:
        nodes = set(graph.names.values())
        found = []
        for name, node in dict(options["layers"]).items():
            if node not in nodes:
                raise UsageError(f"layer {name}: the graph has no node {node!r}; its nodes include "
                                 f"{', '.join(list(nodes)[:6])}, ...")
            kind = "conv" if len(shapes[node]) == 4 else "logits"
            found.append((name, node, kind, f"node {node}"))
        return found
    found = []
    for node in graph.nodes:
        name = graph.names[node]
        if graph.is_relu(node) and len(shapes[name]) == 4:
            found.append((re.sub(r"\W", "_", name), name, "conv", f"ReLU at node {name}"))
    last = graph.names[graph.nodes[-1]]
    if len(shapes[last]) == 2:
        found.append(("logits", last, "logits", f"node {last}: class scores"))
    return found


@lru_cache(maxsize=None)
def spec_for(model: str) -> ModelSpec:
    factory = load_factory(model)
    torch.manual_seed(0)
    module, options = _made(model, factory)
    preprocessing = _preprocessing(model, options.get("preprocessing"))
    size = int(options.get("input_size") or preprocessing.crop)
    try:
        graph = Graph.of(module)
        shapes = graph.shapes(size)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"cannot trace --model {model} with torch.fx at {size} px ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]}); make its forward traceable") from None
    layers = layer_specs(_found_layers(graph, options, shapes), graph, shapes)
    if not any(layer.kind != "pre_relu" for layer in layers):
        raise UsageError(f"--model {model} has no layers to show (no ReLU on a spatial map); name them in the "
                         "factory's options: {'layers': {'name': 'fx.node.name'}}")
    where, _, name = model.rpartition(":")
    title = re.sub(r"[^a-z0-9_-]+", "-", f"{Path(where).stem if where.endswith('.py') else where}-{name}".lower())
    logits = [layer for layer in layers if layer.kind == "logits"]
    width = shapes[logits[0].nodes[0]][1] if logits else 0
    categories = tuple(options.get("categories") or (f"class {i}" for i in range(width)))
    spec = ModelSpec(
        name=title, title=f"{name} from {Path(where).name}", description=f"your model: {model.split('/')[-1]}",
        build=lambda: _made(model, factory)[0],
        load_weights=lambda module, path: load_state_dict(module, path, title),
        weights=None, preprocessing=preprocessing, categories=categories, layers=layers, input_size=size)
    return checked_twins(spec, module)


def checked_twins(spec: ModelSpec, module: nn.Module) -> ModelSpec:
    """The spec without the twins that do not give their layer back under ReLU on a random input (through
    `module`, a network of the spec)."""
    module = module.eval().requires_grad_(False)

    def activations(images, names):
        return NodeExtractor(module, spec.preprocessing, [spec.layer(name) for name in names])(images)

    broken = set(broken_twins(list(spec.layers), activations, spec.input_size))
    if not broken:
        return spec
    twins = {spec.layer(name).pre_relu for name in broken}
    layers = tuple(replace(layer, pre_relu=None) if layer.name in broken else layer
                   for layer in spec.layers if layer.name not in twins)
    return replace(spec, layers=layers)
