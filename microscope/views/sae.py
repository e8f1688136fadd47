"""The SAE view: trains a layer's sparse autoencoder (the `sae` command), and shows it on the site.

Two jobs per layer L: `vectors` (one pass over the images: sampled positions of training images,
every inner position of held-out ones; microscope/sae/vectors.py) and `train` (the TopK SAE,
checkpointed, then evaluated on the held-out vectors; microscope/sae/train.py). The trained SAE
becomes the layers `L_sae` and `L_sae_pre` of every later run (microscope/sae/layer.py), so the
other views compute dataset examples and feature visualizations of its features like any units'.

`build` does not train SAEs (`in_build = False`): training is a choice with its own settings, made
once per layer with `build.py sae`; `build --layers inception_3b_sae` then fills in the pages.

On the site: a feature's page shows the neurons its decoder direction loads on and its nearest
neuron; a neuron's page the features that load most on it; the SAE layer's page the held-out FVU,
L0, dead fraction, the loss curve and every feature by how often it fires (microscope/sae/panel.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import click

from microscope.errors import UsageError
from microscope.jobs import hash_json, make_job
from microscope.view import Panel, UnitPage, View, ViewPlan

VERSION = 1  # bump when training or evaluation changes: stored SAEs are then retrained


@dataclass(frozen=True)
class Settings:
    expansion: int = 8
    k: int = 32
    positions_per_image: int = 16
    steps: int = 3000
    batch_size: int = 512
    lr: float = 4e-4

    def __post_init__(self):
        if self.expansion < 1:
            raise UsageError(f"--expansion must be 1 or more (features = channels x expansion), got {self.expansion}")
        for name, option in (("k", "--k"), ("positions_per_image", "--positions-per-image"), ("steps", "--steps"),
                             ("batch_size", "--sae-batch-size")):
            if getattr(self, name) < 1:
                raise UsageError(f"{option} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")


class SaeView(View):
    name = "sae"
    title = "Sparse autoencoder"
    needs = ("network", "images")
    in_build = False
    budget = {"SAE section of a feature page": 4_000, "unit.json block": 600}

    def options(self):
        return [
            click.option("--expansion", default=8, show_default=True, type=int, help="Features per channel of the layer."),
            click.option("--k", "k", default=32, show_default=True, type=int, help="Features active per position (TopK)."),
            click.option("--positions-per-image", default=16, show_default=True, type=int,
                         help="Random positions (away from the edge) sampled from each training image."),
            click.option("--steps", default=3000, show_default=True, type=int, help="Training steps (batches)."),
            click.option("--sae-batch-size", default=512, show_default=True, type=int, help="Vectors per step."),
            click.option("--lr", default=4e-4, show_default=True, type=float, help="Adam learning rate."),
        ]

    def settings(self, values: dict) -> Settings:
        return Settings(expansion=values.get("expansion", 8), k=values.get("k", 32),
                        positions_per_image=values.get("positions_per_image", 16), steps=values.get("steps", 3000),
                        batch_size=values.get("sae_batch_size", 512), lr=values.get("lr", 4e-4))

    def default_settings(self) -> Settings:
        return Settings()

    def applies(self, layer) -> bool:
        return False  # a layer without an SAE is normal: no "missing" note

    # Plan and run --------------------------------------------------------------------------------

    def check(self, request, session) -> None:
        from microscope.network.catalogue import catalogue

        settings: Settings = request.settings[self.name]
        network = session.network()
        if request.images is None:
            raise UsageError("an SAE is trained on a layer's activations over images; pass --images DIR")
        for info in catalogue(network, list(request.layers)):
            if network.derived_key(info.name) is not None or info.kind in ("sae", "logits"):
                raise UsageError(f"{info.name} is not a layer of the model's grid; train SAEs on conv or block "
                                 f"layers, e.g. inception_3b")
            self.sampling(settings, request.run.seed).check(info.name, info.height, info.width)
            self.training(settings, info.channels, request.run.seed).check(info.channels)

    @staticmethod
    def sampling(settings: Settings, seed: int):
        from microscope.activations.positions import SampleSettings

        return SampleSettings(positions_per_image=settings.positions_per_image, seed=seed)

    @staticmethod
    def training(settings: Settings, width: int, seed: int):
        from microscope.sae.train import TrainSettings

        return TrainSettings(features=width * settings.expansion, k=settings.k, steps=settings.steps,
                             batch_size=settings.batch_size, lr=settings.lr, seed=seed)

    def plan(self, request, session) -> ViewPlan:
        from microscope.sae.stored import read_sae
        from microscope.sae.vectors import read_vectors, vectors_key
        from microscope.views.examples import request_images

        settings: Settings = request.settings[self.name]
        network, store = session.network(), session.store
        dataset = request_images(request, session)
        catalogue = store.read_model(network.spec.name)
        jobs, done = [], 0
        for layer in request.layers:
            info = catalogue.layer(layer)
            sampling = self.sampling(settings, request.run.seed)
            training = self.training(settings, info.channels, request.run.seed)
            vectors = vectors_key(network, dataset, layer, sampling)
            key = hash_json({"version": VERSION, "vectors": vectors, "training": asdict(training)}, digits=32)
            stored = read_sae(store, network.spec.name, layer, network.weights_id)
            if stored is not None and stored[0].key == key:
                done += 1
                continue
            spec = {"layer": layer, "vectors": vectors, "key": key, "sampling": asdict(sampling),
                    "training": asdict(training), "expansion": settings.expansion,
                    "images": {"folder": str(dataset.root), "labels": request.images.labels,
                               "sample": request.images.sample,
                               "view": [dataset.view.resize, dataset.view.crop],
                               "fingerprint": dataset.fingerprint()}}
            first = make_job(self.name, "vectors", layer, spec, work=len(dataset))
            folder = store.sae_vectors_dir(network.spec.name, layer, network.weights_id, vectors)
            jobs += [] if read_vectors(store, folder, vectors) else [first]
            jobs.append(make_job(self.name, "train", layer, spec, after=(first.key,), work=settings.steps))
        return ViewPlan(jobs, todo=sum(job.step == "train" for job in jobs), done=done, what="SAEs")

    def run(self, job, session, report) -> None:
        from microscope.activations.positions import SampleSettings
        from microscope.sae.vectors import collect

        network, store, spec = session.network(), session.store, job.spec
        dataset = images_of(session, spec["images"])
        sampling = SampleSettings(**spec["sampling"])
        if job.step == "vectors":
            collect(network, dataset, spec["layer"], sampling, store, report)
            return
        from microscope.sae.fit import fit

        fit(network, dataset, spec, store, report)
        session.reattach()

    # The site ------------------------------------------------------------------------------------

    def read(self, store, model, layer):
        from microscope.sae.panel import read_layer

        return read_layer(store, model, layer)

    def units(self, data) -> set[int]:
        return set(range(data.units))

    def facts(self, data, unit: int) -> dict:
        return data.facts(unit)

    def unit_panel(self, data, unit: int, page: UnitPage) -> Panel:
        from microscope.sae.panel import unit_panel

        return unit_panel(data, unit, page)

    def layer_panel(self, data, page) -> Panel | None:
        from microscope.sae.panel import layer_panel

        return layer_panel(data, page)

    def layer_json(self, data) -> dict:
        return data.layer_json()


def images_of(session, images: dict):
    """The job's images, scanned again in this process and checked against the plan's fingerprint."""
    from microscope.data.images import ImageDataset, View as ImageView

    def scan():
        dataset = ImageDataset(images["folder"], labels=images["labels"], view=ImageView(*images["view"]),
                               sample=images["sample"])
        if dataset.fingerprint() != images["fingerprint"]:
            raise UsageError(f"the images in {images['folder']} changed since the run was planned; run it again")
        return dataset
    return session.memo(("request images", images["folder"], images["labels"], images["sample"],
                         tuple(images["view"])), scan)


VIEW = SaeView()
