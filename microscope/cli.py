"""The command line. Every computing command builds one request and runs it through the pipeline
(microscope/run/pipeline.py): `examples` and `featurevis` run one view, `build` every view and the site.

Options are checked once, as they are read (click types); bad input anywhere - a click error, a
UsageError, an unusable file or folder, a full disk before anything finished - becomes one line on stderr
and exit code 2. A run whose jobs did not all finish exits 1 (see microscope/errors.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from microscope.cli_options import (LAYERS, common_options, device_option, guard_options, how_options, images_options,
                                    model_option, quiet_option, renamed, store_option, view_options, weights_option)
from microscope.errors import UsageError, no_space


class _Group(click.Group):
    def main(self, args=None, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            return super().main(renamed(sys.argv[1:] if args is None else list(args)), **kwargs)
        except click.ClickException as error:  # a bad option value, an unknown command...
            context = getattr(error, "ctx", None)
            hint = f" (see: {context.command_path} --help)" if context is not None else ""
            _fail(error.format_message().rstrip() + hint)
        except click.exceptions.Abort:
            _interrupted()

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as error:
            _fail(str(error))
        except OSError as error:  # an unreadable file, a full disk, a folder we may not write
            where = f" ({error.filename})" if getattr(error, "filename", None) else ""
            advice = ("free space there and run the same command again" if no_space(error) is not None else
                      "check that the path exists and is readable and writable")
            _fail(f"{error.strerror or error}{where}; {advice}")
        except KeyboardInterrupt:
            _interrupted()


def _fail(message: str) -> None:
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(2)


def _interrupted() -> None:
    click.echo("interrupted: finished work is saved; run the same command again to continue", err=True)
    sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main():
    """microscope: feature visualizations and dataset examples for every unit, as a static site."""


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@main.command()
def models():
    """List the model zoo, where each model's weights come from, and whether they are cached."""
    from microscope.models import get_spec, model_names
    from microscope.network.weights import is_cached

    rows = []
    for name in model_names():
        spec = get_spec(name)
        source = spec.weights.url if spec.weights else "torchvision weights API"
        rows.append([name, spec.title, len(spec.layers), "yes" if is_cached(spec) else "no", source])
    click.echo(_table(rows, ["model", "title", "layers", "cached", "weights"]))


@main.command()
@model_option
@click.option("--all", "show_all", is_flag=True, help="Also list branches and pre-ReLU layers.")
def layers(model, show_all):
    """Table of a model's layers: channels, stride, receptive field."""
    from microscope.network.catalogue import catalogue
    from microscope.network.loaded import load_network

    network = load_network(model, weights="random")  # shapes and fields do not depend on weights
    rows = []
    for info in catalogue(network):
        if not show_all and info.kind in ("branch", "pre_relu"):
            continue
        rf = "whole image" if info.rf_size is None else f"{info.rf_size} px"
        offset = "" if info.rf_offset is None else f"{info.rf_offset:g}"
        rows.append([info.name, info.kind, info.channels, f"{info.height}x{info.width}",
                     info.stride or "", rf, offset])
    click.echo(_table(rows, ["layer", "kind", "channels", "grid", "stride", "receptive field", "rf offset"]))


@main.command()
@model_option
@weights_option
@click.option("--images", required=True, help="Folder of images (searched recursively).")
@click.option("--labels", default=None,
              help="file,class_index CSV, or 'folders' for an ImageFolder tree (class per subfolder).")
@click.option("--image-batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=None, type=click.IntRange(min=0), help="Image decoding processes (default: up to 4).")
@device_option
@quiet_option
def evaluate(model, weights, images, labels, image_batch_size, workers, device, quiet):
    """Top-1/top-5 accuracy (resize 256, centre crop 224): proves the port and the preprocessing."""
    from microscope.network.evaluate import evaluate as run_evaluation
    from microscope.data.images import ImageDataset, Framing
    from microscope.network.loaded import load_network

    network = load_network(model, weights=weights, device=device, progress=not quiet)
    view = Framing(resize=network.spec.preprocessing.resize, crop=network.spec.preprocessing.crop)
    dataset = ImageDataset(images, labels=labels, view=view)
    result = run_evaluation(network, dataset, batch_size=image_batch_size, workers=workers, progress=not quiet)
    click.echo(f"{model}: top-1 {100 * result['top1']:.1f} %  top-5 {100 * result['top5']:.1f} %  "
               f"on {result['n']} images ({len(result['skipped'])} unreadable, skipped)")


@main.command()
@common_options
@images_options(required=True)
@view_options("examples")
def examples(**values):
    """Top-activating dataset images and patches for every channel of the chosen layers."""
    _compute(values, ["examples"])


@main.command()
@common_options
@view_options("featurevis")
def featurevis(**values):
    """Feature visualizations (Lucid's recipe, or --recipe fast) of every chosen unit, into the artifact store."""
    _compute(values, ["featurevis"])


@main.command()
@common_options
@view_options("circuits")
def circuits(**values):
    """Expanded weights between the chosen layers and their neighbours, into the artifact store."""
    _compute(values, ["circuits"])


@main.command()
@common_options
@images_options(what="A dataset to choose the photos from (--photo-count of them), when --photos is not given.")
@view_options("caricature")
def caricature(**values):
    """Caricatures and DeepDreams of a set of photos (--photos DIR, or chosen from --images) at the chosen layers."""
    _compute(values, ["caricature"])


@main.command(name="export-onnx")
@common_options
@images_options(what="A dataset: a few of its photos check the float16 file against float32 (default: noise).")
@view_options("inbrowser")
def export_onnx(**values):
    """The network as ONNX for the site's "Try an image" page: every layer with pages, the SAEs' codes, the logits."""
    _compute(values, ["inbrowser"])


@main.command()
@model_option
@weights_option
@click.option("--layers", required=True, type=LAYERS,
              help="The layers to encode, comma-separated, e.g. inception_3b (conv or block layers).")
@how_options
@images_options(required=True)
@view_options("sae")
def sae(**values):
    """Train a sparse autoencoder on each layer; its features become the layer <layer>_sae."""
    from microscope.run.pipeline import compute
    from microscope.sae.stored import read_sae, sae_layer

    request, session, executor = _request(values, ["sae"])
    outcome = compute(request, session, executor, announce=click.echo)
    model = session.network().spec.name  # the store's name of the model (your own model's: from its file)
    click.echo(f"sae of {model}, " + outcome.summary())
    trained = [read_sae(session.store, model, layer, session.network().weights_id) for layer in request.layers]
    for found in filter(None, trained):
        click.echo(sae_line(found[0]))
    if outcome.exit_code or None in trained:
        sys.exit(outcome.exit_code or 1)
    features = ",".join(sae_layer(layer) for layer in request.layers)
    click.echo(f"next: python build.py build --model {request.run.model} --layers {features} "
               f"--images {values['images']} --store {session.store.root}")


def sae_line(result) -> str:
    """An SAE's numbers: held-out and training FVU side by side, and where training stopped."""
    from microscope.sae.stored import sae_layer

    training = "" if result.train_fvu is None else f" (training {result.train_fvu:.3f})"
    stopped = ""
    if result.steps_trained is not None and result.steps_trained < result.training["steps"]:
        stopped = (f"; stopped early at step {result.steps_trained:,} of {result.training['steps']:,}, "
                   f"kept step {result.best_step:,}")
        limit = result.training.get("dead_limit")
        if limit is not None and any(dead > limit for step, dead in result.validation_dead if step > result.best_step):
            stopped += f" (later steps left over {100 * limit:.0f} % of features silent on validation images)"
    return (f"{sae_layer(result.layer)}: {result.features} features, k {result.k}; held-out FVU {result.fvu:.3f}"
            f"{training}, L0 {result.l0:.1f}, dead {100 * result.dead_fraction:.1f} % (on {result.held_vectors:,} "
            f"positions of held-out images){stopped}")


@main.command()
@common_options
@images_options(required=True, what="The folder the layers' dataset examples were computed from.")
@view_options("atlas")
def atlas(**values):
    """Activation atlases of the chosen layers, from the sample their dataset examples drew."""
    from microscope.atlas.stored import read_atlas
    from microscope.run.pipeline import compute
    from microscope.views.registry import VIEWS

    request, session, executor = _request(values, ["atlas"])
    outcome = compute(request, session, executor, announce=click.echo)
    click.echo(f"atlas of {session.network().spec.name}, " + outcome.summary())
    if outcome.exit_code:
        sys.exit(outcome.exit_code)
    model = session.network().spec.name
    for layer in VIEWS["atlas"].layers_of(request, session):
        found = read_atlas(session.store, model, layer)
        if found is not None:
            counts = " and ".join(f"{len(found.cells[level].row)} {level}" for level in found.cells)
            click.echo(f"{layer}: {found.result.n_vectors} vectors, {counts} cells; UMAP "
                       f"{found.result.seconds['umap']:.0f} s, icons {found.icons.seconds['icons']:.0f} s")
    click.echo(f"next: python build.py site --store {session.store.root} --out site   (each layer page links its atlas)")


def _request(values: dict, views: list[str], out: str | None = None):
    """The checked request, its session and the executor that runs it. The executor comes after the paths
    are checked: Ray takes seconds to start, and a bad --store or --out is said before that."""
    from dataclasses import replace

    from microscope.run.executors import executor_from
    from microscope.run.pipeline import request_from

    request, session = request_from(values, views, out=out)
    executor = executor_from(values["executor"], values["ray_address"], values["gpus_per_job"])
    return replace(request, slots=executor.slots()), session, executor


def _compute(values: dict, views: list[str]) -> None:
    from microscope.run.pipeline import compute

    request, session, executor = _request(values, views)
    outcome = compute(request, session, executor, announce=click.echo)
    click.echo(f"{' and '.join(views)} of {session.network().spec.name}, " + outcome.summary())
    click.echo(f"store: {session.store.root}")
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


@main.command()
@common_options
@images_options()
@view_options()
@click.option("--out", default="site", show_default=True, help="Output folder of the static site.")
@click.option("--labels-file", "labels_file", default=None, help="YAML: layer -> unit -> label (and note).")
@click.option("--log-file", default=None, help="Append a timestamped log of the run to this file.")
@click.option("--preview", is_flag=True, default=False,
              help="A first site in minutes: units 0-7 of one layer (the middle one, unless --layers), the fast "
                   "recipe at 128 px, the channel objective, 300 photos, 16 examples. Options given still win; "
                   "the same command without --preview then refines the site in place.")
def build(out, labels_file, log_file, preview, **values):
    """The whole microscope: dataset examples, feature visualizations and the site, resumable."""
    from dataclasses import replace

    from microscope.run.pipeline import build as run_build
    from microscope.run.preview import preview_layer, preview_request, refine_command
    from microscope.data.unit_labels import read_unit_labels
    from microscope.views.registry import build_views

    _log_to(log_file)
    unit_labels = read_unit_labels(labels_file)
    context = click.get_current_context()
    given = {name for name in values if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    request, session, executor = _request(values, build_views(), out=out)
    if preview:
        request = preview_request(request, given)
    chosen = None
    if preview and "layers" not in given:
        chosen = preview_layer(list(request.layers))
        request = replace(request, layers=(chosen,))
    outcome = run_build(request, session, unit_labels, executor, announce=click.echo)
    if request.images is None:
        outcome.notes.append("no --images: the site shows feature visualizations only")
    click.echo("build: " + outcome.summary())
    if preview:
        click.echo(f"next, the whole layer refined in place: {refine_command(sys.argv, chosen)}")
    click.echo(f"preview: python build.py serve --out {out}    publish: python build.py publish --out {out}")
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


@main.command()
@click.option("--out", default="site", show_default=True, help="Output folder of the static site.")
@store_option
@click.option("--model", "models", multiple=True, help="Only these models (repeatable). Default: all in the store.")
@click.option("--layers", default=None, type=LAYERS,
              help="Comma-separated: rewrite only these layers' pages (incremental).")
@click.option("--labels-file", "labels_file", default=None, help="YAML: layer -> unit -> label (and note).")
@quiet_option
def site(out, store, models, layers, labels_file, quiet):
    """Render the static site from the artifact store."""
    from microscope.data.unit_labels import read_unit_labels
    from microscope.run.folders import resolve_paths
    from microscope.site.builder import build_site
    from microscope.store import Store

    paths = resolve_paths(store, out, writes_store=False)
    labels = read_unit_labels(labels_file)
    names = list(layers) if layers else None  # None: every layer ('all')
    report = build_site(Store(paths.store), paths.out, models=list(models) or None, layers=names, labels=labels,
                        progress=not quiet)
    click.echo(report.summary())


@main.command()
@store_option
@click.option("--out", default=None, help="Also check this built site against its manifest.json.")
@click.option("--repair", is_flag=True, default=False,
              help="Remove every damaged piece (and the record vouching for it): the next build recomputes them.")
def verify(store, out, repair):
    """Check every record of the artifact store (and a built site); say what is damaged. Exit 1 if anything is."""
    from microscope.run.folders import existing_store
    from microscope.store.lock import writing
    from microscope.run.verify import repair as remove_damaged, verify_site, verify_store

    root = existing_store(store).root
    report = verify_store(root)
    for damage in report.damaged:
        click.echo(f"damaged: {damage.path.relative_to(root)}: {damage.problem}")
    site = verify_site(Path(out)) if out is not None else []
    for damage in site:
        click.echo(f"site: {damage.problem}")
    click.echo(f"store {root}: {report.records} records and {report.files} files checked, {len(report.damaged)} damaged"
               + (f"; site {out}: {len(site)} damaged" if out is not None else ""))
    if repair and (report.damaged or site):
        with writing(root):  # no build may be writing while pieces are removed
            removed = remove_damaged(report.damaged, root) + (remove_damaged(site, Path(out)) if site else 0)
        click.echo(f"repaired: removed {removed} files; run the same build again to recompute them")
    elif report.damaged or site:
        raise SystemExit(1)


@main.command()
@click.option("--out", default="site", show_default=True, help="The built site folder.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(out, port):
    """Preview the built site on http://127.0.0.1:PORT/."""
    from microscope.site import serve as serve_site

    serve_site(out, port)


@main.command()
@click.option("--out", default="site", show_default=True, help="The built site folder.")
@click.option("--branch", default="gh-pages", show_default=True)
@click.option("--push/--no-push", default=False, show_default=True, help="Push the branch to --remote.")
@click.option("--remote", default="origin", show_default=True)
@click.option("--message", default=None, help="Commit message.")
@click.option("--force", is_flag=True, default=False,
              help="Replace --branch even if publish did not make it (its files are replaced; never force-pushes).")
def publish(out, branch, push, remote, message, force):
    """Commit the site's files (those its manifest.json lists) to gh-pages through a git worktree."""
    from microscope.site.publish import publish as publish_site

    result = publish_site(out, ".", branch=branch, message=message, push=push, remote=remote, force=force)
    state = "committed" if result["changed"] else "unchanged"
    click.echo(f"{branch}: {state} at {result['commit'][:12]}" + (f", pushed to {remote}" if result["pushed"] else
                                                                 f" (push with: git push {remote} {branch})"))


def _log_to(path: str | None) -> None:
    if not path:
        return
    import logging

    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write log file {path}: {error.strerror}") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # A handler of our own turns off Python's last-resort one, which is what shows warnings on the
    # terminal: warnings keep going there too.
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    root = logging.getLogger("microscope")
    root.addHandler(console)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


guard_options(main)

__all__ = ["main"]
