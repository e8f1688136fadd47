"""The atlas's `icons` stage: a feature visualization of every shown cell's mean activation vector.

Lucid's atlas objective (`featurevis.objectives.direction_neuron`): at the centre position,
dot(a, v) * max(0.1, cos(a, v))^2 with v the cell's mean, rendered with the unit renders' recipe
(Fourier parameterisation, decorrelated colour, standard transforms) at icon size. The cells are
rendered in slices, one job each (`render_slice`: any process of a cluster may run one), batch by batch,
each batch stored as it finishes (icons/<level>-<first>.npz), so a killed run resumes at the first
batch it had not finished; `collect_icons` writes `icons.json` (AtlasStage) last. Element seeds come from
(seed, layer, level, cell), so an icon does not depend on which cells share its batch.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from microscope.atlas.describe import read_layout
from microscope.atlas.stored import LEVELS, batches, icons_key
from microscope.errors import UsageError
from microscope.featurevis.batch import element_seed
from microscope.featurevis.objectives import direction_neuron
from microscope.featurevis.param import FourierImage
from microscope.featurevis.recipe import Recipe
from microscope.featurevis.render import render
from microscope.store import AtlasCells, AtlasIcons, AtlasStage, FileStamp, Store

MIN_ICON = 32


@dataclass(frozen=True)
class IconSettings:
    size: int = 96
    steps: int = 128
    batch_size: int = 16  # cells rendered at once
    cossim_pow: float = 2.0
    seed: int = 0
    recipe: str = Recipe().version

    def check(self) -> None:
        if self.size < MIN_ICON:
            raise UsageError(f"--icon-size {self.size} is too small; use at least {MIN_ICON} px (Lucid's atlas: 80-96)")
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError("--icon-steps and --icon-batch-size must be at least 1")


def level_means(store: Store, model: str, layer: str, cells_stamps: dict) -> dict[str, tuple[AtlasCells, np.ndarray]]:
    """Each level's described cells and their mean vectors, in AtlasCells order."""
    _, layout = read_layout(store, model, layer)
    found = {}
    for level in LEVELS:
        path = store.atlas_cells_file(model, layer, level)
        cells = store.read(path, AtlasCells, cells_stamps.get(path.name))
        if cells is None:
            raise UsageError(f"the atlas cells of {layer} are missing or damaged; run `build.py atlas` again")
        found[level] = cells, getattr(layout, f"mean_{level}")[cells.row, cells.column]
    return found


def slice_cells(batch_size: int, wanted: int = 32) -> int:
    """Cells per icons job: about `wanted`, in whole batches (the batch files must not straddle jobs)."""
    return batch_size * max(1, round(wanted / batch_size))


def render_slice(network, extractor, store: Store, model: str, layer: str, settings: IconSettings,
                 cells_stage: AtlasStage, level: str, first: int, last: int, report) -> None:
    """Render the icons of the level's cells [first, last) (clipped to the cells there are), batch by
    batch; a batch already stored for this key is kept."""
    settings.check()
    key = icons_key(cells_stage.layout_key, network.weights_id, asdict(settings), cells_stage.key)
    cells, means = level_means(store, model, layer, cells_stage.files)[level]
    for start, stop in batches(len(means), settings.batch_size):
        if not first <= start < last:
            continue
        path = store.atlas_icons_file(model, layer, level, start)
        found = store.read(path, AtlasIcons)
        if found is None or str(found.key) != key or len(found.value) != stop - start:
            pixels, value = _render(network, extractor, layer, level, cells, means, start, stop, settings, report)
            store.write(path, AtlasIcons(pixels=pixels, value=value, key=np.array(key)))
        else:
            report(settings.steps)


def collect_icons(store: Store, model: str, layer: str, weights_id: str, settings: IconSettings,
                  cells_stage: AtlasStage) -> AtlasStage:
    """icons.json, after every slice: each batch file checked and stamped. Its time is the wall time
    since the cells were described: the slices may have run anywhere, side by side."""
    key = icons_key(cells_stage.layout_key, weights_id, asdict(settings), cells_stage.key)
    folder = store.atlas_dir(model, layer)
    files = {}
    for level, (_, means) in level_means(store, model, layer, cells_stage.files).items():
        for first, last in batches(len(means), settings.batch_size):
            path = store.atlas_icons_file(model, layer, level, first)
            name = store.file_key(path, folder)
            found = store.read(path, AtlasIcons)
            if found is None or str(found.key) != key or len(found.value) != last - first:
                raise RuntimeError(f"the atlas icons {name} of {layer} are missing or stale; run the build again")
            files[name] = FileStamp.of_file(path)
    seconds = max(0.0, time.time() - store.atlas_stage_file(model, layer, "cells").stat().st_mtime)
    stage = AtlasStage(key=key, layout_key=cells_stage.layout_key, weights_id=weights_id,
                       settings=asdict(settings), seconds={"icons": seconds}, files=files)
    store.write(store.atlas_stage_file(model, layer, "icons"), stage)
    return stage


def _render(network, extractor, layer, level, cells, means, first, last, settings, report):
    recipe = Recipe()
    seeds = [element_seed(settings.seed, layer, "atlas", level, int(r), int(c))
             for r, c in zip(cells.row[first:last], cells.column[first:last])]
    image = FourierImage(seeds, settings.size, sd=recipe.init_sd, decay_power=recipe.decay_power,
                         decorrelate=recipe.decorrelate).to(network.device)
    vectors = torch.as_tensor(np.asarray(means[first:last], np.float32), device=network.device)
    objective = direction_neuron(layer, vectors, cossim_pow=settings.cossim_pow)
    result = render(extractor, objective, image, settings.steps,
                    transform_seed=element_seed(settings.seed, "atlas transforms"), transforms=recipe.transforms,
                    learning_rate=recipe.learning_rate, on_step=lambda: report(1))
    pixels = (result.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return pixels, result.values[-1].astype(np.float32)
