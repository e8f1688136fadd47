"""What a view is: the contract between a view, the pipeline and the site, in two halves.

A view computes one kind of result for the units of a layer (or for a layer), stores it, and shows it
on the site. Its two halves live apart so that the site and the notebook API never import the code
that computes (nor torch):

- the show half, a `Shown` (in the feature's own package, e.g. `examples/panel.py`): `name`, `title`,
  `level` ("unit" or "layer"), what a page says where nothing was computed (`missing`), its expected
  site bytes per unit (`budget`); `read` a layer's stored results (typed records), the `units` they
  cover, `facts` other views may use (a unit's dataset maximum), the units it offers a grid thumbnail
  of (`thumbs`), `unit_panel` and `layer_panel`: the
  typed data of its template partial `templates/views/<name>.html`, and its part of `layer.json`;
- the compute half, a `Computed` (in `views/<name>.py`): its `shown` half, what its jobs `needs`
  ("network": the model with weights; "images": a dataset), its settings record (`settings_type`, a
  `microscope.settings.Settings`: options, checks and defaults come from its declarations), `check`
  (refuse bad input before anything is written), `plan` (the jobs not done yet, microscope/jobs.py),
  `run` (do one, writing its records), `estimate` (their time here) and `store_bytes` (the space a job needs).

views/registry.py lists the compute halves (`VIEWS`), views/shown.py the show halves (`SHOWN`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from microscope.jobs import Job
from microscope.settings import Settings
from microscope.store import LayerInfo, ModelRecord, Store


@dataclass(frozen=True)
class Thumb:
    """A candidate grid thumbnail for a unit: the image file (or patch) and its rank (lower wins)."""

    source: Any  # Path or packs.PatchRef
    rank: int
    what: str  # alt text: "feature visualization", "top dataset example"


@dataclass
class ViewPlan:
    """A view's jobs for a request, and how much of the request the store already holds."""

    jobs: list[Job]
    todo: int = 0  # pieces to compute (renders, layers...); each job says how many it completes (Job.pieces)
    done: int = 0  # pieces already in the store, kept
    what: str = "results"  # what a piece is, for the build's summary ("": no line there)
    notes: list[str] = field(default_factory=list)  # choices made for the user, said before the work
    warnings: list[str] = field(default_factory=list)  # one line each, said before the work and in the summary
    refusals: frozenset[str] = frozenset()  # keys of the jobs that store "cannot be computed" (and why)

    @property
    def refused(self) -> int:
        """Of `todo`, the pieces that will be stored as "cannot be computed"."""
        return sum(job.pieces for job in self.jobs if job.key in self.refusals)

    def counts(self, finished: set[str], broken: set[str]) -> tuple[int, int, int, int]:
        """(computed, refused, failed, not run) pieces after a run in which the jobs whose keys are in
        `finished` finished and those in `broken` failed (or waited for one that failed); the others were not
        started (a full disk held them back). A piece counts as computed only when the job completing it
        finished. A view whose jobs say no pieces counts all of `todo` at once, by its jobs."""
        if not any(job.pieces for job in self.jobs):
            if all(job.key in finished for job in self.jobs):
                return self.todo, 0, 0, 0
            failed = any(job.key in broken for job in self.jobs)
            return 0, 0, self.todo if failed else 0, 0 if failed else self.todo
        computed = refused = failed = not_run = 0
        for job in self.jobs:
            if job.key in finished and job.key in self.refusals:
                refused += job.pieces
            elif job.key in finished:
                computed += job.pieces
            elif job.key in broken:
                failed += job.pieces
            else:
                not_run += job.pieces
        return computed, refused, failed, not_run


@dataclass
class Panel:
    """One view's part of one unit page."""

    data: Any  # what its partial shows (a dataclass or dict of plain values)
    json: dict  # its block of unit.json
    provenance: list[str] = field(default_factory=list)  # one sentence per stage
    settings: dict = field(default_factory=dict)  # everything that produced it, shown under "All settings"
    files: list[str] = field(default_factory=list)  # site files it wrote (page.produce records them)
    thumb: Thumb | None = None
    summary: dict = field(default_factory=dict)  # its few numbers in the layer's unit list (layer.json)
    links: list = field(default_factory=list)  # (text, "#fragment") links from the unit's tile on the layer page


@dataclass
class UnitPage:
    """What a panel may know of the page it goes on, and how it writes the page's images."""

    model: ModelRecord
    layer: LayerInfo
    unit: int
    folder: str  # site-relative folder of the page, e.g. models/inceptionv1/mixed4a/97
    facts: dict  # values the views publish about this unit (`Shown.facts`)
    state: dict  # the view's own, kept while one model is built (shared images, caches)
    produce: Callable  # produce(name, sources, settings, make) -> metadata; writes folder/name once
    writer: Any  # the site's writer, for images shared by many pages (site/output.py)
    model_dir: str  # site-relative folder of the model, e.g. models/inceptionv1
    other: Callable  # other(layer, unit) -> {"href", "thumb", "label"} of another unit, relative; None if absent


@dataclass
class LayerPage:
    """What a layer panel may know of the layer page it goes on, and how it writes files beside it."""

    model: ModelRecord
    layer: LayerInfo
    folder: str  # site-relative folder of the layer page
    write: Callable  # write(name, bytes) -> size: a file in the layer's folder (name may hold subfolders)
    render: Callable | None = None  # render(name, template, **context) -> size: a page of its own in the folder
    other: Callable | None = None  # other(folder, layer, unit) -> link to a unit page from `folder` (UnitPage.other)
    layer_href: Callable | None = None  # layer_href(layer) -> link to another layer's page from this one; None if absent


class Shown:
    """The show half of a view: what the site and the notebook API read. Never imports torch."""

    name: ClassVar[str]
    title: ClassVar[str]
    level: ClassVar[str] = "unit"
    missing: ClassVar[str] = ""  # what a page says for a layer without results: how to compute them
    budget: ClassVar[dict[str, int]] = {}  # expected site bytes per unit, for the size estimate
    template_folder: ClassVar[Any] = None  # a folder holding views/<name>.html, for views outside microscope

    def applies(self, layer: LayerInfo) -> bool:
        """Whether a page of this layer without the view's results says they are missing."""
        return True

    def read(self, store: Store, model: ModelRecord, layer: LayerInfo) -> Any | None:
        """The layer's stored results, or None if it has none."""
        return None

    def units(self, data) -> set[int]:
        return set()

    def facts(self, data, unit: int) -> dict:
        return {}

    def thumbs(self, data) -> set[int]:
        """The units whose panel offers a grid thumbnail (`Panel.thumb`), known before any page is written:
        pages of one layer show each other's thumbnails whatever order they are written in."""
        return set()

    def unit_panel(self, data, unit: int, page: UnitPage) -> Panel | None:
        return None

    def layer_panel(self, data, page: LayerPage) -> Panel | None:
        """Its part of the layer page (the partial's `layer_panel` macro), if any."""
        return None

    def layer_json(self, data) -> dict:
        """Its part of layer.json: what produced the layer's results."""
        return {}

    def layer_fields(self, data) -> dict:
        """Fields of its own at the top of layer.json (and in the layer's record the model page gets), e.g. the
        caricatures' `caricatures` list; they must not reuse a name layer.json has already."""
        return {}

    def finish_model(self, state: dict, incremental: bool) -> None:
        """Called once a model's pages are written (e.g. to save a cache of shared images)."""

    @property
    def template(self) -> str:
        return f"views/{self.name}.html"


class Computed:
    """The compute half of a view: what the pipeline runs."""

    shown: ClassVar[Shown]  # its show half
    settings_type: ClassVar[type[Settings] | None] = None  # its settings record; None: it has no settings
    needs: ClassVar[tuple[str, ...]] = ("network",)
    in_build: ClassVar[bool] = True  # computed by `build` (else only by its own command)

    @property
    def name(self) -> str:
        return self.shown.name

    @property
    def title(self) -> str:
        return self.shown.title

    def options(self) -> list[Callable]:
        """click option decorators this view adds to `build` and its own command (from its settings)."""
        return self.settings_type.options() if self.settings_type else []

    def settings(self, values: dict) -> Settings | None:
        """Its settings from a command's values (by field name; absent ones take their defaults)."""
        return self.settings_type.from_values(values) if self.settings_type else None

    def default_settings(self) -> Settings | None:
        return self.settings_type() if self.settings_type else None

    def check(self, request, session) -> None:
        """Raise UsageError for anything of the request this view cannot do. Writes nothing: every view
        is checked before the first result is written."""

    def plan(self, request, session) -> ViewPlan:
        raise NotImplementedError

    def run(self, job: Job, session, report: Callable[[int], None]) -> None:
        raise NotImplementedError

    def estimate(self, plan: ViewPlan, request, session) -> float | None:
        """Seconds the plan's jobs will take on this machine, from a short calibration (a few steps of
        the real work); None when the view has no estimate. Writes nothing."""
        return None

    def store_bytes(self, job: Job, session) -> int | None:
        """About how many bytes of the store the job needs (what it leaves there, and its temporary state
        while it runs), on the high side: what a full disk's line asks the user to free. None: not estimated."""
        return None
