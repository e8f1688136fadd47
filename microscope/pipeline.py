"""`build`: dataset examples → feature visualization → site, for the chosen layers of one model.

Every stage reads and writes the artifact store and skips what it already holds for the same
configuration (examples: model, weights, dataset fingerprint, k; feature vis: per unit, model,
weights, recipe, seed, steps, size), so an interrupted build continues where it stopped and a
rebuild of one layer leaves every other layer's results and pages as they were.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from microscope.errors import UsageError
from microscope.store import Store, atomic_write_json

log = logging.getLogger("microscope.build")

MAIN_KINDS = ("conv", "block")  # what `--layers all` means: the layers Microscope shows


@dataclass
class BuildOptions:
    model: str = "inceptionv1"
    weights: str | None = None
    layers: str = "all"
    images: str | None = None  # folder, "imagenette", or None for feature visualizations only
    labels: str | None = None  # dataset labels: CSV or "folders"
    units: str = "all"
    out: str = "site"
    store: str = "artifacts"
    steps: int = 512
    size: int = 224
    objectives: str = "channel,neuron,negative,diversity"
    device: str = "auto"
    batch_size: int | None = None  # feature-vis units per batch
    image_batch_size: int = 32
    top_k: int = 48
    seed: int = 0
    unit_labels: dict | None = None  # layer -> unit -> label, for the site
    progress: bool = True


@dataclass
class BuildReport:
    layers: list[str] = field(default_factory=list)
    rendered: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    site_summary: str = ""

    def summary(self) -> str:
        stages = ", ".join(f"{name} {secs:.0f} s" for name, secs in self.seconds.items())
        lines = [f"build: {len(self.layers)} layer(s): {', '.join(self.layers)}",
                 f"  feature visualizations: {self.rendered} rendered, {self.reused} reused, "
                 f"{len(self.failed)} failed",
                 f"  time per stage: {stages}"]
        lines += [f"  failed: {failure}" for failure in self.failed]
        if self.site_summary:
            lines.append(self.site_summary)
        return "\n".join(lines)


def choose_layers(network, text: str) -> list[str]:
    if text.strip() == "all":
        return [layer.name for layer in network.spec.layers if layer.kind in MAIN_KINDS]
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError("--layers is empty; pass 'all' or names such as "
                         + ", ".join(choose_layers(network, "all")[:3]))
    for name in names:
        network.layer(name)  # unknown names raise, listing the valid ones
    return list(dict.fromkeys(names))


def resolve_images(images: str) -> tuple[str, str | None]:
    """--images DIR, or 'imagenette' (downloaded into the cache): (folder, labels CSV or None)."""
    if images == "imagenette":
        from microscope.imagenette import imagenette

        folder, labels = imagenette()
        return str(folder), str(labels)
    if not Path(images).is_dir():
        raise UsageError(f"image folder {images} not found; pass an existing folder or 'imagenette' to --images")
    return images, None


def write_model_info(network, store: Store) -> None:
    from microscope.catalogue import model_info

    atomic_write_json(store.model_json(network.spec.name), model_info(network))


def build(options: BuildOptions) -> BuildReport:
    from microscope.examples import compute_examples
    from microscope.featurevis.units import layer_channels, parse_objectives, parse_units, render_units
    from microscope.images import ImageDataset, View
    from microscope.network import load_network
    from microscope.site import build_site

    report = BuildReport()
    store = Store(options.store)
    objectives = parse_objectives(options.objectives)  # bad input fails before any work starts
    if options.steps <= 0:
        raise UsageError(f"--steps must be a positive number of optimisation steps, not {options.steps}")
    if options.top_k < 1:
        raise UsageError(f"--top must be at least 1, not {options.top_k}")

    began = time.perf_counter()
    network = load_network(options.model, weights=options.weights, device=options.device,
                           seed=options.seed, progress=options.progress)
    report.layers = choose_layers(network, options.layers)
    for layer in report.layers:  # units out of range fail now, not after hours of dataset examples
        parse_units(options.units, layer_channels(network, layer, options.size))
    dataset = None
    if options.images:
        folder, found_labels = resolve_images(options.images)
        dataset = ImageDataset(folder, labels=options.labels or found_labels, view=View(resize=224, crop=224))
    write_model_info(network, store)
    report.seconds["load"] = time.perf_counter() - began
    log.info("model %s (weights %s), layers %s", options.model, network.weights_id[:12], report.layers)

    if dataset is not None:
        began = time.perf_counter()
        compute_examples(network, dataset, report.layers, top_k=options.top_k, store=store,
                         batch_size=options.image_batch_size, progress=options.progress)
        report.seconds["examples"] = time.perf_counter() - began
        log.info("examples done over %d images (%d unreadable)", len(dataset), len(dataset.skipped))

    began = time.perf_counter()
    for layer in report.layers:
        try:
            summary = render_units(network, layer, options.units, store=store, objectives=objectives,
                                   steps=options.steps, size=options.size, batch_size=options.batch_size,
                                   seed=options.seed, progress=options.progress)
        except UsageError:
            raise
        except (RuntimeError, ValueError, OSError) as error:  # keep going: other layers are independent
            report.failed.append(f"{layer}: {type(error).__name__}: {error}")
            log.error("feature visualization of %s failed: %s", layer, error)
            continue
        rendered = sum(len(units) for units in summary.rendered.values())
        reused = sum(len(units) for units in summary.skipped.values())
        report.rendered, report.reused = report.rendered + rendered, report.reused + reused
        log.info("featurevis %s: %s rendered, %s reused", layer, rendered, reused)
    report.seconds["featurevis"] = time.perf_counter() - began

    began = time.perf_counter()
    site = build_site(store.root, options.out, models=[options.model], layers=report.layers,
                      labels=options.unit_labels, progress=options.progress)
    report.seconds["site"] = time.perf_counter() - began
    report.site_summary = site.summary()
    log.info("site written to %s", options.out)
    return report
