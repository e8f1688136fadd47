"""Build the static site from the artifact store: `build_site(store, out)`.

Site layout (every link relative, so it works under any sub-path and from file://):

    index.html, 404.html, .nojekyll, site.json, search.js, static/
    manifest.json                                         size and sha256 of every other file (not dotfiles)
    models/<model>/index.html, model.json                 the model page and its JSON index
    models/<model>/concepts.html                          its concepts, where units have concept labels
    models/<model>/datasets/<fingerprint>/<index>.jpg     dataset photos shown on hover
    models/<model>/<layer>/index.html, layer.json         the layer grid and its JSON index
    models/<model>/<layer>/<unit>/index.html, unit.json   a unit, its renders and patch strips

Incremental: with `layers=[...]` only those layers' folders are rebuilt, and the pages that list
layers (model, home, search) are re-rendered from the `layer.json` files already in the site. Every
file is written only if its bytes changed, and image encoding is skipped when sources and settings
are unchanged, so a rebuild touches exactly what changed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from microscope import __version__
from microscope.web.charts import network_diagram
from microscope.caricature.panel import through_layers
from microscope.errors import DiskFull, UsageError, no_space
from microscope.names import segment
from microscope.site.concept_labels import model_concepts
from microscope.site.concepts_page import page_name, write_concepts_page
from microscope.site.manifest import write_manifest
from microscope.site.output import SiteWriter, folder_size
from microscope.site.pages import LayerContext, build_layer, layer_units
from microscope.site.estimate import ESTIMATE_KINDS, estimate_size, site_space_line
from microscope.site.render import Renderer, static_files
from microscope.site.search import concept_rows, search_index, search_script
from microscope.site.try_page import PAGE as TRY_PAGE, SCRIPTS as TRY_SCRIPTS, try_files, write_try_page
from microscope.store import ModelRecord, Store, usable_folder
from microscope.store.lock import writing
from microscope.inbrowser.stored import read_exported
from microscope.views.shown import SHOWN
from microscope.web.runtime import page_paths, runtime_files
from microscope.web.images import PAGE_BUDGET

log = logging.getLogger(__name__)

GENERATOR = f"microscope {__version__}"
PROMINENT_KINDS = ("conv", "block")  # listed on the model page even before anything is computed
SITE_LOCK = ".site.lock"  # held while a build writes the folder (store/lock.py); never published


@dataclass
class SiteReport:
    out_dir: Path
    total_bytes: int = 0
    total_files: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    models: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unit_budget: int = 0
    part_budget: dict[str, int] = field(default_factory=dict)
    planned_units: int = 0  # unit pages this build writes (or leaves as they are), as the layers are read

    def summary(self) -> str:
        lines = [f"site: {self.out_dir} - {self.total_files} files, {self.total_bytes / 1e6:.1f} MB "
                 f"({self.written} written, {self.unchanged} unchanged, {self.removed} removed)"]
        for name, model in self.models.items():
            lines.append(
                f"  {name}: {model['layers_built']} layers, {model['units_built']} unit pages, "
                f"{model['bytes'] / 1e6:.1f} MB; {model['bytes_per_unit'] / 1e3:.0f} kB per unit -> "
                f"all {model['estimate_units']} units of its {', '.join(ESTIMATE_KINDS)} layers: "
                f"about {model['estimate_bytes'] / 1e9:.2f} GB (GitHub Pages allows 1 GB)")
        lines.append(f"  per-unit budget: {self.unit_budget / 1e3:.0f} kB "
                     + ", ".join(f"{part} {size / 1e3:.0f} kB" for part, size in self.part_budget.items()))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _normalise_labels(labels) -> dict[str, dict[int, dict]]:
    """layer -> unit -> {"label", "note"}; units may be given as strings, entries as plain strings."""
    result: dict[str, dict[int, dict]] = {}
    if not labels:
        return result
    if not isinstance(labels, dict):
        raise UsageError("labels must map layer -> unit -> {label, note}; check the labels file")
    for layer, units in labels.items():
        if not isinstance(units, dict):
            raise UsageError(f"labels for layer {layer!r} must map unit numbers to labels")
        for unit, entry in units.items():
            try:
                number = int(unit)
            except (TypeError, ValueError):
                raise UsageError(f"label key {unit!r} of layer {layer!r} is not a unit number") from None
            if isinstance(entry, str):
                entry = {"label": entry}
            if not isinstance(entry, dict):
                raise UsageError(f"label of {layer} unit {unit} must be text or {{label, note}}")
            result.setdefault(str(layer), {})[number] = {"label": str(entry.get("label") or "") or None,
                                                         "note": str(entry.get("note") or "") or None}
    return result


def part_budget() -> dict[str, int]:
    """Expected bytes per unit by part: each view's images, and the page itself."""
    return {**{name: sum(view.budget.values()) for name, view in SHOWN.items()}, "page": sum(PAGE_BUDGET.values())}


def check_out_dir(out: Path, create: bool = True) -> Path:
    """A folder the site may be written to: new, empty, or a microscope site; one line if not."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        marker = out / "site.json"
        try:
            ours = json.loads(marker.read_text(encoding="utf-8")).get("generator", "").startswith("microscope")
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise UsageError(f"--out {out} is a non-empty folder that is not a microscope site; "
                             "choose a new or empty folder (the builder deletes stale files in its site)")
    return usable_folder(out, "site", "--out", create=create)


def build_site(store: Store, out_dir, *, models=None, layers=None, labels=None, progress: bool = True) -> SiteReport:
    """Render the site for `models` (default: all in the store) into `out_dir`.

    `layers`: only rebuild these layers (incremental); `labels`: layer -> unit -> {label, note}.
    """
    available = store.models()
    if not available:
        raise UsageError(f"no models in the artifact store {store.root} (no <model>/model.json); "
                         "compute feature visualizations or dataset examples first")
    chosen = list(models) if models else available
    for name in chosen:
        if name not in available:
            raise UsageError(f"model {name!r} is not in the artifact store {store.root}; it has: {', '.join(available)}")
    catalogues = {name: store.read_model(name) for name in chosen}
    if layers:
        known = {layer.name for record in catalogues.values() for layer in record.layers}
        for name in layers:
            if name not in known:
                some = ", ".join(sorted(known)[:12])
                raise UsageError(f"layer {name!r} is in none of the models {', '.join(chosen)}; layers include: {some}")
    label_map = _normalise_labels(labels)
    out = check_out_dir(Path(out_dir))
    report = SiteReport(out_dir=out, part_budget=part_budget())
    report.unit_budget = sum(report.part_budget.values())
    with writing(out, "the site", SITE_LOCK, "--out"):  # two builds into one folder would prune each other's files
        try:
            _write_site(store, out, report, chosen, catalogues, models, layers, label_map, progress)
        except OSError as error:
            if no_space(error) is None:
                raise
            raise DiskFull(site_space_line(out, error.strerror or str(error), report.planned_units)) from None
    report.total_bytes, report.total_files = folder_size(out)  # (the lock, released, is empty again)
    return report


def _write_site(store, out: Path, report: SiteReport, chosen, catalogues, models, layers, label_map,
                progress) -> None:
    writer = SiteWriter(out)
    if not (out / "site.json").exists():  # mark the folder as ours first: a killed build may resume
        writer.write_text("site.json", json.dumps({"generator": GENERATOR, "models": []}) + "\n")
    renderer = Renderer()

    build = SiteBuild(store, writer, renderer, layers, label_map, progress, report)
    fresh = {name: _build_model(build, catalogues[name]) for name in chosen}
    site_models = _site_models(writer, fresh)  # every model in the site, including ones not rebuilt now
    if models and writer.path("static/ort").is_dir():
        build.runtime_links()  # the Try pages of models not built now still run on it
    tried = bool(build.runtime and build.runtime[0])
    for path, content in static_files().items():
        if tried or path not in TRY_SCRIPTS:  # a site without a Try page does not carry its scripts
            writer.write(f"static/{path}", content)
    writer.write_text("index.html", renderer.render("home.html", root="", page_title="Microscope",
                                                    models=site_models, generator=GENERATOR))
    writer.write_text("404.html", renderer.render("404.html", root=None, page_title="Page not found"))
    writer.write_text(".nojekyll", "")
    writer.write_text("search.js", search_script(search_index(site_models)))
    writer.write_text("site.json", json.dumps({"generator": GENERATOR, "models": [
        {"name": m["name"], "title": m["title"], "url": m["url"], "json": m["json"]} for m in site_models]},
        indent=1) + "\n")
    if not layers:
        writer.prune("static")
        if not models:
            writer.prune("models")
    # Last, after pruning: the manifest lists what is in the site now (publish copies only that).
    report.warnings += write_manifest(writer, GENERATOR)
    report.written, report.unchanged, report.removed = writer.written, writer.unchanged, writer.removed


def _site_models(writer: SiteWriter, fresh: dict[str, dict]) -> list[dict]:
    records = dict(fresh)
    models_dir = writer.path("models")
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*/model.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("name") not in records and "layers" in record:
                records[record["name"]] = record
    return sorted(records.values(), key=lambda m: m["name"])


def _existing_layer(writer: SiteWriter, layer_dir: str, name: str) -> dict | None:
    try:
        record = json.loads(writer.path(f"{layer_dir}/layer.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("layer") != name:
        return None
    return {k: v for k, v in record.items() if k != "units"}


@dataclass
class SiteBuild:
    """What every model's pages are built with."""

    store: Store
    writer: SiteWriter
    renderer: Renderer
    only_layers: list[str] | None  # an incremental build of these layers
    labels: dict[str, dict[int, dict]]
    progress: bool
    report: SiteReport
    runtime: list = field(default_factory=list)  # [runtime links] once static/ort/ is written, [None] if it cannot be

    def runtime_links(self) -> dict | None:
        """The in-browser runtime's files under static/ort/, written the first time a model's page needs them;
        None (and one warning) when they cannot be had, e.g. offline with nothing cached."""
        if not self.runtime:
            try:
                files = runtime_files(progress=self.progress)
            except UsageError as error:
                self.report.warnings.append(f"no Try-an-image pages: {error}")
                self.runtime.append(None)
            else:
                for path, content in files.items():
                    self.writer.write(f"static/{path}", content)
                self.runtime.append(page_paths("../../static/"))  # from a model's folder
        return self.runtime[0]


def _existing_units(writer: SiteWriter, model_dir: str, name: str) -> list[int]:
    """The units listed by a layer page already in the site (a layer not rebuilt now)."""
    try:
        record = json.loads(writer.path(f"{model_dir}/{segment(name)}/layer.json").read_text(encoding="utf-8"))
        return [int(unit["unit"]) for unit in record.get("units", [])]
    except (OSError, ValueError, TypeError, KeyError):
        return []


def _build_model(build: SiteBuild, model: ModelRecord) -> dict:
    """Every page of one model; returns its record (model.json)."""
    model_dir = f"models/{segment(model.name)}"
    kept, layer_data = _read_layers(build, model, model_dir)
    build.report.planned_units += sum(len(layer_units(data)) for data in layer_data.values())
    index = _unit_index(build.writer, model_dir, kept, layer_data)
    # Concepts across all the model's layers (kept ones too): the concepts page and search need them all.
    concepts = model_concepts(build.store, model, lambda layer, unit: unit in index.get(layer, ()))
    page = page_name(concepts)
    exported = read_exported(build.store, model.name)
    if exported and exported[0].weights_id != model.weights_id:
        exported = None  # a network exported from other weights than the pages show
    runtime = build.runtime_links() if exported else None
    try_page = TRY_PAGE if runtime else None
    built = {**kept, **_build_layers(build, model, model_dir, layer_data, index, page, try_page)}
    write_concepts_page(build.writer, build.renderer, model, model_dir, concepts)  # after the layers' thumbnails
    rows = _layer_rows(model, model_dir, built)
    tried = write_try_page(build.writer, build.renderer, model, model_dir, exported, rows, runtime)
    pages = ([f"{model_dir}/{page}"] if page else []) + (try_files(model_dir) if tried else [])
    estimate = estimate_size(model, built, build.writer, model_dir, build.report.part_budget, pages=pages)
    site_record = _model_record(model, model_dir, rows, estimate)
    site_record["try"] = {"page": tried, "onnx_bytes": exported[0].onnx_bytes,
                          "weights_dtype": exported[0].weights_dtype} if tried else None
    site_record["concepts"] = {"page": page, "count": sum(1 for c in concepts.values() if c.detectors),
                               "search": concept_rows(concepts)} if concepts else None
    _write_model_pages(build, model_dir, site_record)
    return site_record


def _read_layers(build: SiteBuild, model: ModelRecord, model_dir: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(layer -> its layer.json record already in the site, for the layers an incremental build keeps;
    layer -> view -> its stored data, for the layers built now)."""
    kept: dict[str, dict] = {}
    layer_data: dict[str, dict] = {}
    for info in model.layers:
        if build.only_layers and info.name not in build.only_layers:
            existing = _existing_layer(build.writer, f"{model_dir}/{segment(info.name)}", info.name)
            if existing:
                kept[info.name] = existing
            continue
        layer_data[info.name] = {name: found for name, view in SHOWN.items()
                                 if (found := view.read(build.store, model, info)) is not None}
    return kept, layer_data


def _unit_index(writer: SiteWriter, model_dir: str, kept: dict, layer_data: dict) -> dict[str, set[int]]:
    """Which units have pages, in every layer: pages link across layers (a circuit's inputs and outputs)."""
    index = {name: set(units) for name in kept if (units := _existing_units(writer, model_dir, name))}
    index.update({name: set(layer_units(data)) for name, data in layer_data.items()})
    return index


def _build_layers(build: SiteBuild, model: ModelRecord, model_dir: str, layer_data: dict,
                  index: dict[str, set[int]], concepts_page: str | None, try_page: str | None) -> dict[str, dict]:
    """Write the pages of every layer read now (linking to the model's `concepts_page` and `try_page` where it
    has them);
    layer -> its record. Views finish the model last."""
    built: dict[str, dict] = {}
    states: dict[str, dict] = {}  # view -> what it gathers across the model's layers
    for info in model.layers:
        if info.name not in layer_data:
            continue
        layer_dir = f"{model_dir}/{segment(info.name)}"
        data = layer_data[info.name]
        if not layer_units(data):
            if build.only_layers:
                build.report.warnings.append(f"{model.name}/{info.name}: nothing computed yet, no pages written")
                build.writer.prune(layer_dir)  # pages of artifacts that are gone must go too
            continue
        context = LayerContext(model, info, layer_dir, data, build.labels.get(info.name, {}), states, build.writer,
                               build.renderer, index, build.labels, concepts_page, try_page)
        built[info.name] = build_layer(context, build.progress)
        if build.only_layers:
            build.writer.prune(layer_dir)
    for name, state in states.items():
        SHOWN[name].finish_model(state, incremental=bool(build.only_layers))
    return built


def _layer_rows(model: ModelRecord, model_dir: str, built: dict[str, dict]) -> list[dict]:
    """The model page's rows: every layer with pages, and the prominent ones even before they have any."""
    rows = []
    for info in model.layers:
        record = built.get(info.name)
        if record is None and info.kind not in PROMINENT_KINDS:
            continue
        row = {**vars(info), "url": None, "href": None, "units": [], "labels": {}, "thumbs": [], "n_units": 0,
               "views": []}
        if record:
            row.update(url=f"{model_dir}/{record['dir']}/index.html", href=f"{record['dir']}/index.html",
                       caricatures=record.get("caricatures"), units=record["unit_ranges"], labels=record["labels"], thumbs=record["thumbs"],
                       n_units=record["n_units"], views=[SHOWN[name].title for name in record["views"] if name in SHOWN])
        rows.append(row)
    return rows


def _model_record(model: ModelRecord, model_dir: str, rows: list[dict], estimate: dict) -> dict:
    return {
        "name": model.name, "title": model.title or model.name, "description": model.description,
        "weights_id": model.weights_id, "input_size": model.input_size, "url": f"{model_dir}/index.html",
        "json": f"{model_dir}/model.json", "dir": f"{model_dir}/", "layers": rows,
        "n_units": sum(r["n_units"] for r in rows), "n_layers": sum(1 for r in rows if r["url"]), "estimate": estimate,
    }


def _write_model_pages(build: SiteBuild, model_dir: str, site_record: dict) -> None:
    """model.json and the model page; a full build then prunes what no longer belongs to the model."""
    writer = build.writer
    # The main path only (branches run in parallel inside their block): convolutions, blocks, logits.
    diagram = network_diagram([r for r in site_record["layers"] if r["kind"] in PROMINENT_KINDS
                               or (r["kind"] == "logits" and r["url"])])
    writer.write_text(f"{model_dir}/model.json", json.dumps(site_record, indent=1, allow_nan=False) + "\n")
    writer.write_text(f"{model_dir}/index.html", build.renderer.render(
        "model.html", root="../../", page_title=site_record["title"], model=site_record, diagram=diagram,
        through=through_layers(site_record["layers"])))
    if not build.only_layers:
        writer.prune(model_dir)
    build.report.models[site_record["name"]] = {
        "layers_built": site_record["n_layers"], "units_built": site_record["n_units"],
        "bytes": writer.bytes_under(model_dir), **site_record["estimate"]}
