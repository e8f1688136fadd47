"""Bytes per unit of the site, measured on realistic images; prints a table and a full-site estimate.

    .venv/bin/python bench/site_sizes.py [--units 32] [--keep DIR]

Builds a throw-away artifact store from ../shared: feature visualizations cut from the reference
render sheet (real Lucid-recipe InceptionV1 renders, varied by flips, rotations and a little noise
because the sheet is a JPEG and fresh PNG renders hold more fine detail), dataset patches and
thumbnails from real ImageNet validation photos. Then builds the site and reports, per unit, the
bytes of each kind of file, and what a full InceptionV1 site (about 7,000 units) would take.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.featurevis.recipe import Recipe  # noqa: E402
from microscope.featurevis.registry import UNIT_OBJECTIVES  # noqa: E402
from microscope.data.packs import BOTTOM, TOP, write_pack  # noqa: E402
from microscope.site.builder import build_site  # noqa: E402
from microscope.site.builder import part_budget  # noqa: E402
from microscope.store import (DatasetIndex, DatasetRef, ExamplesResult, ExamplesSummary, LayerInfo,  # noqa: E402
                              ModelRecord, PatchSettings, RenderConfig, RenderImage, RenderRecord, Store,
                              ThumbSettings, ViewSettings, atomic_write_bytes)
from microscope.store.files import image_bytes  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
FULL_SITE_UNITS = 7000
# Every objective of the registry with the default recipe's files (4 diversity images), as a full build stores them.
OBJECTIVE_FILES = {name: objective.files(Recipe(), "png") for name, objective in UNIT_OBJECTIVES.items()}


def variants(tiles: list[Image.Image], rng: np.random.Generator, noise: float) -> Image.Image:
    tile = tiles[rng.integers(len(tiles))]
    tile = tile.rotate(90 * int(rng.integers(4)))
    if rng.random() < 0.5:
        tile = ImageOps.mirror(tile)
    array = np.asarray(tile, dtype=np.float32) + rng.normal(0, noise, size=(224, 224, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def make_store(root: Path, units: int, noise: float) -> None:
    """A store of one InceptionV1 layer, written with the store's typed records as the views write them."""
    rng = np.random.default_rng(0)
    sheet = Image.open(SHARED / "reference" / "fv-caffe-inception_4a-units0-15-128steps.jpg").convert("RGB")
    tiles = [sheet.crop((c * 224, r * 224, (c + 1) * 224, (r + 1) * 224)) for r in range(2) for c in range(8)]
    photos = sorted((SHARED / "data" / "imagenet-val-1300").glob("*.JPEG"))[:200]
    store = Store(root)
    model = "inceptionv1"
    layer = LayerInfo("mixed4a", "block", units, 14, 14, 16, 139, 7.5, "mixed4a_pre_relu", "inception block 4a")
    store.write(store.model_file(model), ModelRecord(name=model, title="InceptionV1", description="",
                                                     weights_id="bench", input_size=224, categories=[], layers=[layer]))
    fingerprint = "bench"
    store.write(store.dataset_file(model, fingerprint), DatasetIndex(
        fingerprint=fingerprint, name="imagenet-val-1300", root=str(SHARED / "data"), files=[p.name for p in photos],
        labels=None, classes=None, thumbs=ThumbSettings(160, "jpg", ViewSettings(224, 224))))
    for i, path in enumerate(photos):  # as the examples view makes them: the 224 view at 160 px
        image = ImageOps.fit(Image.open(path).convert("RGB"), (224, 224)).resize((160, 160), Image.Resampling.LANCZOS)
        atomic_write_bytes(store.thumb_file(model, fingerprint, i), image_bytes(image, ".jpg", quality=85))
    k, b, bands, per_band = 48, 48, 4, 8
    arrays = {"top_values": -np.sort(-rng.uniform(1, 9, (units, k)), 1).astype(np.float32),
              "top_index": rng.integers(0, len(photos), (units, k)), "top_y": rng.integers(0, 14, (units, k)),
              "top_x": rng.integers(0, 14, (units, k)),
              "bottom_values": np.sort(rng.uniform(-9, -1, (units, b)), 1).astype(np.float32),
              "bottom_index": rng.integers(0, len(photos), (units, b)), "bottom_y": rng.integers(0, 14, (units, b)),
              "bottom_x": rng.integers(0, 14, (units, b)),
              "band_names": np.array(["top 0.1%", "0.1-1%", "1-10%", "10-50%"]),
              "band_fractions": np.array([[0, 0.001], [0.001, 0.01], [0.01, 0.1], [0.1, 0.5]]),
              "band_values": rng.uniform(0, 5, (units, bands, per_band)).astype(np.float32),
              "band_index": rng.integers(0, len(photos), (units, bands, per_band)),
              "band_y": rng.integers(0, 14, (units, bands, per_band)),
              "band_x": rng.integers(0, 14, (units, bands, per_band)),
              "band_count": rng.integers(1, 500, (units, bands)),
              "band_value_range": rng.uniform(0, 5, (units, bands, 2)),
              "band_fraction_range": rng.uniform(0, 1, (units, bands, 2)),
              "hist_counts": rng.integers(0, 10000, (units, 128)),
              "hist_edges": np.tile(np.linspace(-10, 10, 129), (units, 1)),
              "top_classes": rng.integers(0, 1000, (units, 5)), "top_class_counts": rng.integers(1, 9, (units, 5)),
              "mean": rng.uniform(0, 1, units), "nonzero_fraction": rng.uniform(0, 1, units),
              "n_positions": np.full(units, 196 * len(photos))}
    files = {"summary.npz": store.write(store.examples_summary_file(model, "mixed4a"), ExamplesSummary(**arrays))}
    config = RenderConfig(model=model, weights_id="bench", layer="mixed4a", optimised_layer="mixed4a_pre_relu",
                          recipe={"version": "lucid/1", "learning_rate": 0.05, "decay_power": 1.0}, seed=0,
                          steps=512, size=224, precision="fp32", image_format="png")
    for unit in range(units):
        folder = store.renders_dir(model, "mixed4a", unit)
        for objective, names in OBJECTIVE_FILES.items():
            images = [RenderImage(file=name, stamp=atomic_write_bytes(folder / name, image_bytes(
                                      variants(tiles, rng, noise), ".png")),
                                  objective_final=float(rng.uniform(50, 900)),
                                  loss_curve=[float(v) for v in -np.cumsum(rng.uniform(0, 2, 65))],
                                  activation_mean=float(rng.uniform(1, 5)), activation_max=float(rng.uniform(5, 50)))
                      for name in names]
            store.write(store.render_file(model, "mixed4a", unit, objective), RenderRecord(
                unit=unit, objective=objective, config=config, loss_curve_steps=list(range(0, 512, 8)) + [511],
                images=images))
        entries = []
        for kind, count in ((TOP, k), (BOTTOM, 12)):  # the view cuts patches for 12 bottom examples
            for rank in range(count):
                photo = Image.open(photos[rng.integers(len(photos))]).convert("RGB")
                y, x = rng.integers(0, photo.height - 139), rng.integers(0, photo.width - 139)
                patch = photo.crop((x, y, x + 139, y + 139)).resize((80, 80), Image.Resampling.LANCZOS)
                entries.append((unit, kind, rank, image_bytes(patch, ".jpg", quality=90)))  # as the view stores them
        # one pack per unit: the site reads them alike
        files[f"patches/{unit:06d}.idx.npz"] = write_pack(store.patches_dir(model, "mixed4a"), unit, entries)
    store.write(store.examples_result_file(model, "mixed4a"), ExamplesResult(
        key="bench", identity={}, model=model, weights_id="bench", layer="mixed4a",
        dataset=DatasetRef(fingerprint, "imagenet-val-1300", len(photos)), view=ViewSettings(224, 224), top_k=k,
        n_images=len(photos), skipped=0, skipped_files=[], histogram_of="mixed4a_pre_relu", grid=layer,
        patches=PatchSettings("jpg", 80, 90, [128, 128, 128], ["top", "bottom"], 12), batch_size=32, files=files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--noise", type=float, default=4.0, help="std of noise added to the reference renders")
    parser.add_argument("--keep", type=Path, default=None, help="build store and site here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        make_store(base / "store", args.units, args.noise)
        start = time.perf_counter()
        report = build_site(Store(base / "store"), base / "site", progress=False)
        seconds = time.perf_counter() - start
        by_kind: dict[str, int] = defaultdict(int)
        layer_dir = base / "site" / "models" / "inceptionv1" / "mixed4a"
        for path in layer_dir.glob("*/*"):
            stem = path.stem.split("-")[0] if path.stem.startswith("diversity") else path.stem
            by_kind[f"{stem}{path.suffix}"] += path.stat().st_size
        photos = sum(p.stat().st_size for p in (base / "site" / "models" / "inceptionv1" / "datasets").rglob("*.jpg"))
        n_photos = len(list((base / "site" / "models" / "inceptionv1" / "datasets").rglob("*.jpg")))
    per_unit = {kind: size / args.units for kind, size in sorted(by_kind.items())}
    total = sum(per_unit.values())
    print(f"{args.units} units, built in {seconds:.1f} s ({1000 * seconds / args.units:.0f} ms per unit, cold)\n")
    print(f"{'file':<22}{'bytes/unit':>12}")
    for kind, size in per_unit.items():
        print(f"{kind:<22}{size:>12,.0f}")
    budget = part_budget()
    print(f"{'total':<22}{total:>12,.0f}   (budget {sum(budget.values()):,}: "
          + ", ".join(f"{k} {v:,}" for k, v in budget.items()) + ")")
    print(f"\ndataset photos: {n_photos} files, {photos / max(1, n_photos):,.0f} bytes each")
    print(f"full site, {FULL_SITE_UNITS:,} units: {FULL_SITE_UNITS * total / 1e9:.2f} GB "
          f"+ photos (1,300 images: {1300 * photos / max(1, n_photos) / 1e9:.3f} GB)")
    print("\n" + report.summary())


if __name__ == "__main__":
    main()
