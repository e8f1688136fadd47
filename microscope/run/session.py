"""What jobs run with, made once per process: the store, the network and the datasets.

A `RunSpec` is plain data naming them (the checked paths, model, seed, device), so any process -
this one, a forked worker, a machine of a cluster - can make its own `Session` from it. The session
loads the network and datasets on first use and keeps them, with anything else a view wants to
reuse between the jobs a process runs (`memo`): a decoded dataset index, a traced extractor, the
examples pass's decoded views. A memo entry only saves work: a job that does not find one rebuilds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from microscope.store import Store
from microscope.network.loaded import load_network
from microscope.sae.layer import attach_saes


@dataclass(frozen=True)
class Images:
    """--images and --labels: a folder of photos and how they are labelled (CSV, "folders" or none)."""

    folder: str
    labels: str | None = None
    sample: int | None = None  # --image-sample: a seeded sample of this many of the images (None: all)


@dataclass(frozen=True)
class Paths:
    """Where a run reads and writes: absolute, and checked once (microscope/run/folders.py)."""

    store: str
    out: str | None = None  # the site folder (build)
    images: Images | None = None  # the photos and their labels
    weights: str | None = None  # a weights file, "random", or None: the cache, then a checked download


@dataclass(frozen=True)
class RunSpec:
    paths: Paths
    model: str
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @property
    def store(self) -> str:
        return self.paths.store

    @property
    def weights(self) -> str | None:
        return self.paths.weights


@dataclass(frozen=True)
class Request:
    """What a run is asked to do, checked: the views' plans are made from it."""

    run: RunSpec
    layers: tuple[str, ...]  # resolved against the model
    units: Any  # selection.Units
    views: tuple[str, ...]  # names of the views to compute
    settings: dict = field(default_factory=dict)  # view name -> its typed settings
    slots: int = 1  # jobs the executor runs at once: the dataset pass is cut into as many shards

    @property
    def images(self) -> Images | None:
        return self.run.paths.images


class Session:
    def __init__(self, spec: RunSpec, network=None, distributed: bool = False):
        self.spec = spec
        # One of many processes running the plan's jobs (a Ray worker): the jobs of one pass may run
        # anywhere, so nothing may assume that this process ran the others (e.g. the pass's view cache).
        self.distributed = distributed
        self.store = Store(spec.store)
        self._network = network
        self._attached = False
        self._memo: dict[Any, Any] = {}

    def network(self):
        """The model with its weights, loaded on first use."""
        if self._network is None:
            self._network = load_network(self.spec.model, weights=self.spec.weights, device=self.spec.device,
                                         seed=self.spec.seed, progress=self.spec.progress)
        if not self._attached:  # the store's SAEs become layers (microscope/sae/layer.py)
            attach_saes(self._network, self.store)
            self._attached = True
        return self._network

    def reattach(self) -> None:
        """Look for SAEs in the store again (after one was trained)."""
        self._attached = False

    def memo(self, key, make: Callable[[], Any]):
        """`make()`, once per key and process."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def forget(self, key) -> Any:
        return self._memo.pop(key, None)
