"""How big a site gets: after a build, the size of a site with every unit of the model (from the bytes
each view's panels really took per unit); before one, a warning when that would pass GitHub Pages' 1 GB;
and when its folder runs out of space, the one line saying how much its pages need."""
from __future__ import annotations

from pathlib import Path

from microscope.errors import megabytes, no_space_line
from microscope.site.output import SiteWriter, folder_size
from microscope.store import LayerInfo, ModelRecord

ESTIMATE_KINDS = ("conv", "block", "logits", "sae")  # "all layers" of a full site, for the size estimate
PAGES_LIMIT = 1_000_000_000  # GitHub Pages' limit on a site
UNIT_BYTES = 94_000  # a unit page with all its images, as full builds of InceptionV1 measure it


def estimate_size(model: ModelRecord, built: dict[str, dict], writer: SiteWriter, model_dir: str, budget: dict,
                  pages: list[str] = ()) -> dict:
    """Size of a site with every unit of the model's conv, block and logits layers computed, each layer's own files
    (its panels' files: caricatures, circuits' weights) as the built layers' average where it is not built yet,
    and the model's own `pages` (site-relative paths written already: the concepts page) as they are."""
    per_unit = {}
    for part, fallback in budget.items():
        total = sum(record.get("bytes", {}).get(part, 0) for record in built.values())
        units = sum(record.get("units_with", {}).get(part, 0) if part != "page" else record.get("n_units", 0)
                    for record in built.values())
        per_unit[part] = total / units if units else fallback
    layers = [layer for layer in model.layers if layer.kind in ESTIMATE_KINDS or layer.name in built]
    all_units = sum(layer.channels for layer in layers)
    unit_bytes = sum(per_unit.values())
    measured = [record.get("layer_bytes", 0) for record in built.values()]
    layer_bytes = sum(measured) + sum(1 for layer in layers if layer.name not in built) * (
        sum(measured) / len(measured) if measured else 0)
    photo_bytes = writer.bytes_under(f"{model_dir}/datasets")
    if photo_bytes == 0 and writer.path(f"{model_dir}/datasets").is_dir():
        photo_bytes = folder_size(writer.path(f"{model_dir}/datasets"))[0]
    return {"bytes_per_unit": round(unit_bytes), "per_unit_parts": {k: round(v) for k, v in per_unit.items()},
            "estimate_units": all_units,
            "layer_bytes": round(layer_bytes),
            "estimate_bytes": round(all_units * unit_bytes + layer_bytes + photo_bytes
                                    + sum(writer.bytes_by_path[p] for p in pages))}


def size_warning(model: str, layers: list[LayerInfo], derived: set[str]) -> str | None:
    """A line if a site of every unit of the model's layers (SAE layers included) would pass 1 GB,
    naming what to leave out - said before the work, not after it. `derived`: the SAE layers' names."""
    channels = {info.name: info.channels for info in layers if info.kind in ESTIMATE_KINDS}
    total = sum(channels.values()) * UNIT_BYTES
    if total <= PAGES_LIMIT:
        return None
    saes = sorted((name for name in channels if name in derived), key=lambda n: -channels[n])
    drop, left = [], total
    for name in saes:
        if left <= PAGES_LIMIT:
            break
        drop.append(f"{name} ({channels[name]} features, about {channels[name] * UNIT_BYTES / 1e9:.2f} GB)")
        left -= channels[name] * UNIT_BYTES
    advice = (f"build without {', '.join(drop)}, or give them their own site (--out)" if drop and left <= PAGES_LIMIT
              else "build fewer layers or --units into each site (--out)")
    return (f"a site of every unit of {model} ({sum(channels.values())} units, about "
            f"{total / 1e9:.2f} GB at {UNIT_BYTES // 1000} kB a unit) would pass GitHub Pages' 1 GB: {advice}")


def site_space_line(out: Path, reason: str, units: int) -> str:
    """The one line of a site folder that ran out of space while `units` unit pages were being written: the
    space they take at UNIT_BYTES a page, less what the folder holds already (unchanged files are not
    written again)."""
    if units:
        needed = max(units * UNIT_BYTES - folder_size(out)[0], UNIT_BYTES)
        needs = f"its {units} unit pages need about {megabytes(needed)} more"
    else:
        needs = f"its pages need room (about {UNIT_BYTES // 1000} kB a unit page)"
    return no_space_line("the site folder", out, reason, needs,
                         "run the same command again; it writes only the pages that are missing or changed")
