"""The in-browser export's compute half: each model's network as ONNX for the "Try an image" page.

One job per model (step "export"): the network from the normalised image to every layer with pages and the
logits (microscope/inbrowser/export.py), its weights halved where the outputs stay within tolerance
(inbrowser/half.py), written as model.onnx and then its `ExportedModel` record. Which layers: every layer of the
request with a spatial grid, every SAE layer `<L>_sae` of the network, and every layer the store already holds
examples or renders of for these weights - so the page covers every layer that has pages. The export is made
again only when its record is missing, damaged, or was made for other weights, layers, SAEs, opset or precision
(its `key`). A network torch cannot export is not a usage error: the build says so in one line and goes on
without the page.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from microscope.data.images import Framing, UnreadableImage, load_rgb
from microscope.inbrowser.export import INPUT_NAME, OPSET, Exported, NotExportable, export_onnx
from microscope.inbrowser.half import TOLERANCE, Comparison, compare, to_float16
from microscope.inbrowser.panel import SHOWN
from microscope.inbrowser.stored import read_exported
from microscope.jobs import hash_json, make_job
from microscope.settings import Settings, setting
from microscope.store import ExamplesResult, ExportedModel, InputPreparation, RenderRecord, Store
from microscope.store.files import atomic_write_bytes
from microscope.view import Computed, ViewPlan
from microscope.views.examples import request_images

log = logging.getLogger("microscope.build")
VERSION = 1  # bump when the exported graph changes: stored files are then exported again
CHECK_PHOTOS = 4  # photos of --images the float16 file is checked on, spread over the folder
NOISE_SEED = 30  # the seeded noise images used instead when no photos were given


@dataclass(frozen=True)
class InBrowserSettings(Settings):
    try_page: str = setting("auto", "--try-page", "Try an image: the page that runs the network in a visitor's "
                            "browser, and the weights of the network it downloads (auto: float16 where every output "
                            f"stays within {TOLERANCE:g} of float32's and the top 5 agree, else float32), or off: no "
                            "page, and the site lighter by the runtime (45 MB) and the network (14 MB for InceptionV1).",
                            choices=("auto", "float16", "float32", "off"))


class InBrowserView(Computed):
    shown = SHOWN
    settings_type = InBrowserSettings
    needs = ("network",)

    def layers_of(self, request, session) -> list[str]:
        """The layers the page shows, in network order: those of the request with a spatial grid, every SAE
        layer, and every layer with stored examples or renders for these weights."""
        network, store = session.network(), session.store
        model = network.spec.name
        wanted = set(request.layers) | {name for name, found in network.derived.items() if found.spec.kind == "sae"}
        wanted |= {layer.name for layer in network.layers if _has_pages(store, model, layer.name, network.weights_id)}
        candidates = [layer.name for layer in network.layers if layer.name in wanted and layer.kind != "logits"]
        shapes = session.memo(("inbrowser shapes", tuple(candidates)), lambda: _shapes(network, candidates))
        return [name for name in candidates if len(shapes[name]) == 4]

    def plan(self, request, session) -> ViewPlan:
        settings: InBrowserSettings = request.settings.get(self.name) or InBrowserSettings()
        network, store = session.network(), session.store
        if settings.try_page == "off":  # a page built from an earlier export would contradict the setting
            removed = store.remove_export(network.spec.name)
            return ViewPlan([], what="models", notes=["try an image: off, its stored export removed"] if removed else [])
        layers = self.layers_of(request, session)
        spec = {"model": network.spec.name, "weights_id": network.weights_id, "layers": sorted(layers),
                "derived": {name: network.derived_key(name) for name in sorted(layers) if network.derived_key(name)},
                "opset": OPSET, "try_page": settings.try_page, "version": VERSION}
        key = hash_json(spec, digits=32)
        found = read_exported(store, network.spec.name)
        if found is not None and found[0].key == key:
            return ViewPlan([], todo=0, done=1, what="models")
        exported = exported_network(session, layers, OPSET)  # seconds; said now if it cannot be exported
        if isinstance(exported, NotExportable):
            return ViewPlan([], what="models", warnings=[left_out(network.spec.name, exported)])
        job = make_job(self.name, "export", "", {**spec, "key": key, "order": layers,
                                                 "photos": _check_photos(request, session)}, pieces=1)
        return ViewPlan([job], todo=1, done=0, what="models")

    def run(self, job, session, report) -> None:
        spec, network, store = job.spec, session.network(), session.store
        started = time.perf_counter()
        exported = exported_network(session, spec["order"], spec["opset"])
        if isinstance(exported, NotExportable):  # (the plan said it; a worker of another kind may meet it here)
            log.warning(left_out(spec["model"], exported))
            return
        names = [(output.name, output.kind) for output in exported.outputs]
        images, photos = _check_inputs(network, spec["photos"])
        with torch.no_grad():
            expected = [[value.numpy() for value in exported.module(image[None])] for image in torch.from_numpy(images)]
        chosen, comparison = _choose(exported.onnx, names, images, expected, spec["try_page"], spec["model"])
        write_export(store, spec, network, exported.outputs, chosen, comparison, photos)
        log.info("Try an image: %s exported in %.1f s (%d bytes, weights %s)", spec["model"],
                 time.perf_counter() - started, len(chosen[1]), chosen[0])
        report(1)

    def store_bytes(self, job, session) -> int:
        network = session.network()
        values = sum(p.numel() for p in network.module.parameters()) + \
            sum(b.numel() for found in network.derived.values() for b in found.module.buffers())
        return values * 4 + 64 * 1024  # float32 at most, and the record


def exported_network(session, layers: list[str], opset: int) -> Exported | NotExportable:
    """The network exported with these outputs, or why it cannot be; once per session (the plan's is the run's)."""

    def make():
        try:
            return export_onnx(session.network(), layers, opset)
        except NotExportable as refused:
            return refused

    return session.memo(("inbrowser export", tuple(layers), opset), make)


def left_out(model: str, refused: NotExportable) -> str:
    return f"the Try-an-image page of {model} is left out: {refused}"


def _choose(onnx32: bytes, names, images, expected, wanted: str, model: str) -> tuple[tuple[str, bytes], Comparison]:
    """(("float16" or "float32", the file), its comparison with torch) as --try-page says."""
    if wanted == "float32":
        return ("float32", onnx32), compare(onnx32, INPUT_NAME, names, images, expected)
    onnx16 = to_float16(onnx32)
    halved = compare(onnx16, INPUT_NAME, names, images, expected)
    if wanted == "float16" or halved.agrees():
        return ("float16", onnx16), halved
    worst = max(halved.max_error, key=halved.max_error.get)
    changed = max(halved.changed.items(), key=lambda item: item[1], default=None)
    log.info("Try an image: %s keeps float32 weights (with float16 weights %s is off by %.2g of its largest value%s%s)",
             model, worst, halved.max_error[worst], "" if changed is None else
             f", {changed[0]} changes {100 * changed[1]:.1f} % of its code", "" if halved.same_top else
             ", and the top 5 change")
    return ("float32", onnx32), compare(onnx32, INPUT_NAME, names, images, expected)


def write_export(store: Store, spec: dict, network, outputs, chosen: tuple[str, bytes], comparison: Comparison,
                 photos: int) -> None:
    """model.onnx, then the record (last: it says the file is complete)."""
    model, (dtype, data) = spec["model"], chosen
    onnx_file = store.inbrowser_onnx_file(model)
    stamp = atomic_write_bytes(onnx_file, data)
    pre = network.spec.preprocessing
    store.write(store.inbrowser_record_file(model), ExportedModel(
        key=spec["key"], model=model, weights_id=spec["weights_id"], opset=spec["opset"], input_name=INPUT_NAME,
        input_size=pre.crop, preprocessing=InputPreparation(pre.channel_order, float(pre.scale), list(pre.mean),
                                                            list(pre.std), pre.resize, pre.crop),
        outputs=outputs, weights_dtype=dtype, tolerance=TOLERANCE, max_error=comparison.max_error,
        code_changes=comparison.changed,
        check_photos=photos, onnx_bytes=len(data), files={Store.file_key(onnx_file, onnx_file.parent): stamp}))


def _check_photos(request, session) -> list[str]:
    """Paths of up to CHECK_PHOTOS photos of --images, spread evenly over the folder (none without --images)."""
    if request.images is None:
        return []
    dataset = request_images(request, session)
    picks = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(CHECK_PHOTOS, len(dataset)))})
    return [str(dataset.path(i)) for i in picks]


def _check_inputs(network, photos: list[str]) -> tuple[np.ndarray, int]:
    """(the normalised inputs (n, 3, crop, crop) float32, how many are photos): the readable photos, framed and
    normalised as the page does; seeded noise images where none is readable."""
    pre = network.spec.preprocessing
    framing = Framing(pre.resize, pre.crop)
    pictures = []
    for path in photos:
        try:
            pictures.append(framing.tensor(load_rgb(path)).float() / 255)
        except UnreadableImage:
            continue
    if pictures:
        rgb = torch.stack(pictures)
    else:
        rgb = torch.rand(2, 3, pre.crop, pre.crop, generator=torch.Generator().manual_seed(NOISE_SEED))
    return pre(rgb).numpy().astype(np.float32), len(pictures)


def _has_pages(store: Store, model: str, layer: str, weights_id: str) -> bool:
    """Whether the store holds the layer's examples or any of its renders for these weights."""
    examples = store.read(store.examples_result_file(model, layer), ExamplesResult)
    if examples is not None and examples.weights_id == weights_id:
        return True
    for _, path in store.render_files(model, layer)[:1]:
        render = store.read(path, RenderRecord)
        return render is not None and render.config.weights_id == weights_id
    return False


def _shapes(network, layers: list[str]) -> dict[str, tuple[int, ...]]:
    """Each layer's activation shape at the model's crop."""
    if not layers:
        return {}
    crop = network.spec.preprocessing.crop
    with torch.no_grad():
        found = network.activations(torch.zeros(1, 3, crop, crop), layers)
    return {name: tuple(value.shape) for name, value in found.items()}


VIEW = InBrowserView()
