"""The SAE view's compute half: trains a layer's sparse autoencoder (the `sae` command).

Two jobs per layer L: `vectors` (one pass over the images: sampled positions of training images,
every inner position of held-out ones; microscope/sae/vectors.py) and `train` (the TopK SAE,
checkpointed, then evaluated on the held-out vectors; microscope/sae/train.py). The trained SAE
becomes the layers `L_sae` and `L_sae_pre` of every later run (microscope/sae/layer.py), so the
other views compute dataset examples and feature visualizations of its features like any units'.

`build` does not train SAEs (`in_build = False`): training is a choice with its own settings, made
once per layer with `build.py sae`; `build --layers inception_3b_sae` then fills in the pages.

The show half is microscope/sae/panel.py: a feature's page shows the neurons its decoder direction
loads on and its nearest neuron; a neuron's page the features that load most on it; the SAE layer's
page the held-out FVU, L0, dead fraction, the loss curve and every feature by how often it fires.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from microscope.activations.positions import SampleSettings, held_out_images
from microscope.data.images import ImageDataset, Framing
from microscope.errors import UsageError
from microscope.jobs import hash_json, make_job
from microscope.network.catalogue import catalogue
from microscope.sae.fit import fit
from microscope.sae.panel import SHOWN
from microscope.sae.sizing import Sizing, choose
from microscope.sae.stored import read_sae
from microscope.sae.train import TrainSettings
from microscope.sae.vectors import collect, read_vectors, vectors_key
from microscope.settings import Settings, setting
from microscope.view import Computed, ViewPlan
from microscope.views.examples import request_images

VERSION = 1  # bump when training or evaluation changes: stored SAEs are then retrained


@dataclass(frozen=True)
class SaeSettings(Settings):
    expansion: int = setting(8, "--expansion", "Features per channel of the layer (features = channels x expansion).",
                             low=1)
    k: int = setting(32, "--k", "Features active per position (TopK).", low=1)
    positions_per_image: int | None = setting(
        None, "--positions-per-image", "Random positions (away from the edge) sampled from each training image "
        "(default: chosen from the data, 32 vectors per feature: microscope/sae/sizing.py).", low=1)
    steps: int | None = setting(None, "--steps", "Most training steps (batches); held-out early stopping may end "
                                "sooner (default: 6000, or one pass over a larger training set).", low=1)
    batch_size: int = setting(512, "--batch-size", "Vectors per training step.", low=1, old=("--sae-batch-size",))
    lr: float = setting(4e-4, "--lr", "Adam learning rate (above 0).", low=0)

    def __post_init__(self):
        super().__post_init__()
        if self.lr == 0:  # a declared range includes its bound; a rate of 0 would train nothing
            raise UsageError(f"--lr must be above 0, got {self.lr}")


class SaeView(Computed):
    shown = SHOWN
    settings_type = SaeSettings
    needs = ("network", "images")
    in_build = False

    def check(self, request, session) -> None:
        settings: SaeSettings = request.settings[self.name]
        network = session.network()
        if request.images is None:
            raise UsageError("an SAE is trained on a layer's activations over images; pass --images DIR")
        for info in catalogue(network, list(request.layers)):
            if network.derived_key(info.name) is not None or info.kind in ("sae", "logits"):
                raise UsageError(f"{info.name} is not a layer of the model's grid; train SAEs on conv or block "
                                 f"layers, e.g. inception_3b")
            # The user's own numbers are checked as given; chosen ones fit the grid by construction.
            given = SampleSettings(positions_per_image=settings.positions_per_image or 1, seed=request.run.seed)
            given.check(info.name, info.height, info.width)
            self.training(settings, info.channels, settings.steps or 1, request.run.seed).check(info.channels)

    @staticmethod
    def sizing(settings: SaeSettings, info, n_images: int, seed: int) -> Sizing:
        sampling = SampleSettings(seed=seed)
        train_images = n_images - int(held_out_images(n_images, sampling.held_out, seed).sum())
        inner = max(0, info.height - 2 * sampling.edge) * max(0, info.width - 2 * sampling.edge)
        return choose(info.name, info.channels * settings.expansion, info.channels, train_images, inner,
                      settings.positions_per_image, settings.steps, settings.batch_size)

    @staticmethod
    def training(settings: SaeSettings, width: int, steps: int, seed: int) -> TrainSettings:
        return TrainSettings(features=width * settings.expansion, k=settings.k, steps=steps,
                             batch_size=settings.batch_size, lr=settings.lr, seed=seed)

    def plan(self, request, session) -> ViewPlan:
        settings: SaeSettings = request.settings[self.name]
        network, store = session.network(), session.store
        dataset = request_images(request, session)
        model = store.read_model(network.spec.name)
        jobs, done, notes, warnings = [], 0, [], []
        for layer in request.layers:
            info = model.layer(layer)
            sizing = self.sizing(settings, info, len(dataset), request.run.seed)
            sampling = SampleSettings(positions_per_image=sizing.positions_per_image, seed=request.run.seed)
            training = self.training(settings, info.channels, sizing.steps, request.run.seed)
            vectors = vectors_key(network, dataset, layer, sampling)
            key = hash_json({"version": VERSION, "vectors": vectors, "training": asdict(training)}, digits=32)
            stored = read_sae(store, network.spec.name, layer, network.weights_id)
            if stored is not None and stored[0].key == key:
                done += 1
                continue
            notes.append(sizing.line())
            shortfall = sizing.shortfall(settings.expansion, info.channels, sampling.held_out)
            warnings += [shortfall] if shortfall else []
            spec = {"layer": layer, "vectors": vectors, "key": key, "sampling": asdict(sampling),
                    "training": asdict(training), "expansion": settings.expansion,
                    "images": {"folder": str(dataset.root), "labels": request.images.labels,
                               "sample": request.images.sample,
                               "view": [dataset.view.resize, dataset.view.crop],
                               "fingerprint": dataset.fingerprint()}}
            first = make_job(self.name, "vectors", layer, spec, work=len(dataset))
            folder = store.sae_vectors_dir(network.spec.name, layer, network.weights_id, vectors)
            jobs += [] if read_vectors(store, folder, vectors) else [first]
            jobs.append(make_job(self.name, "train", layer, spec, after=(first.key,), work=sizing.steps, pieces=1))
        return ViewPlan(jobs, todo=sum(job.step == "train" for job in jobs), done=done, what="SAEs",
                        notes=notes, warnings=warnings)

    def run(self, job, session, report) -> None:
        network, store, spec = session.network(), session.store, job.spec
        dataset = images_of(session, spec["images"])
        if job.step == "vectors":
            collect(network, dataset, spec["layer"], SampleSettings(**spec["sampling"]), store, report)
            return
        fit(network, dataset, spec, store, report)
        session.reattach()

    def store_bytes(self, job, session) -> int:
        """The vectors (float32: sampled positions of the training images, every inner one of the held-out
        tenth), or the weights with Adam's two moments, checkpointed beside the previous checkpoint."""
        info = session.store.read_model(session.network().spec.name).layer(job.layer)
        if job.step == "vectors":
            sampling = job.spec["sampling"]
            inner = max(1, (info.height - 2 * sampling["edge"]) * (info.width - 2 * sampling["edge"]))
            per_image = (1 - sampling["held_out"]) * sampling["positions_per_image"] + sampling["held_out"] * inner
            return int(len(images_of(session, job.spec["images"])) * per_image * info.channels * 4) + 4096
        return 2 * 3 * 2 * job.spec["training"]["features"] * info.channels * 4 + 4096


def images_of(session, images: dict) -> ImageDataset:
    """The job's images, scanned again in this process and checked against the plan's fingerprint."""
    def scan():
        dataset = ImageDataset(images["folder"], labels=images["labels"], view=Framing(*images["view"]),
                               sample=images["sample"])
        if dataset.fingerprint() != images["fingerprint"]:
            raise UsageError(f"the images in {images['folder']} changed since the run was planned; run it again")
        return dataset
    return session.memo(("request images", images["folder"], images["labels"], images["sample"],
                         tuple(images["view"])), scan)


VIEW = SaeView()
