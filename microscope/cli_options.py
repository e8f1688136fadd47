"""The command line's options: those several commands share, declared once here (a view's own come
from its settings record, microscope/settings.py), the older spellings of renamed flags, and what every
option refuses, whatever its own type: values that a shell can send but no option means - an empty
string, NaN or infinity, a number beyond 32 bits, a NUL byte - are refused while the arguments are read:
one line, exit code 2, before any model is loaded.
"""
from __future__ import annotations

import math
import re

import click

from microscope.selection import LAYERS, UNITS


LARGEST = 2**31 - 1  # the largest number any option takes (indices, seeds and sizes are 32-bit)


class Guarded:
    """Mixed into an option's own type (see `guard_options`): an empty value, a NUL byte, a number that is
    not finite (nan, inf) and one too large for the code that uses it are refused."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("the value is empty; give one, or leave the option out for its default", param, ctx)
        if isinstance(value, str) and "\x00" in value:  # not from a shell, but from a script or a config
            self.fail("the value holds a NUL byte", param, ctx)
        found = super().convert(value, param, ctx)
        if isinstance(found, float) and not math.isfinite(found):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if isinstance(found, int) and not isinstance(found, bool) and abs(found) > LARGEST:
            self.fail(f"{value} is too large; the most it can be is {LARGEST}", param, ctx)
        return found


_GUARDED: dict[type, type] = {}


def guard_options(group: click.Group) -> None:
    """Give every text and number option of every command the checks of `Guarded` (a copy of its
    type with them added, so --help and the type's own checks stay as they are)."""
    kinds = (click.types.StringParamType, click.types.IntParamType, click.types.FloatParamType)
    for command in group.commands.values():
        for param in command.params:
            kind = param.type
            if isinstance(param, click.Option) and isinstance(kind, kinds) and not isinstance(kind, Guarded):
                cls = type(kind)
                if cls not in _GUARDED:
                    _GUARDED[cls] = type(f"Guarded{cls.__name__}", (Guarded, cls), {})
                guarded = _GUARDED[cls].__new__(_GUARDED[cls])
                guarded.__dict__.update(vars(kind))
                param.type = guarded


def check_device(ctx, param, value):
    if value is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip()):
        raise click.BadParameter(f"unknown device {value!r}; use auto, cpu, cuda or cuda:N", ctx, param)
    return value if value is None else value.strip()


# Flags renamed so that each setting has one name, their older spellings still accepted (with a note):
# the views' own come from their settings' declarations (Option.old).
RENAMED = {"--layer": "--layers"}


def renamed(arguments: list[str]) -> list[str]:
    """The arguments with older flag spellings written as now (each said in a note on stderr)."""
    from microscope.settings import renamed_arguments, renamed_flags
    from microscope.views.registry import VIEWS

    table = {**RENAMED, **renamed_flags(view.settings_type for view in VIEWS.values() if view.settings_type)}
    return renamed_arguments(arguments, table, lambda line: click.echo(line, err=True))


def _options(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


def view_options(*names):
    """The options of these views (of every view `build` computes if none is named)."""
    from microscope.views.registry import VIEWS, build_views

    return _options(*[option for name in names or build_views() for option in VIEWS[name].options()])


model_option = click.option("--model", "model", default="inceptionv1", show_default=True,
                            help="Model of the zoo (see `models`).")
weights_option = click.option("--weights", default=None,
                              help="Weights file, or 'random' (seeded, for tests). Default: cache, then download.")
device_option = click.option("--device", default="auto", show_default=True, callback=check_device,
                             help="auto, cpu or cuda.")
store_option = click.option("--store", default=None,
                            help="Artifact store folder (default: $MICROSCOPE_STORE or ./artifacts).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars (the summary is still printed).")
executor_options = _options(
    click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "ray"]),
                 help="Who runs the jobs: this machine, or Ray tasks (pip install 'microscope[ray]')."),
    click.option("--ray-address", default=None,
                 help="With --executor ray: 'auto' or HOST:PORT of a running cluster's head (default: a Ray "
                      "instance on this machine). The --store must be a path every node sees."),
    click.option("--gpus-per-job", default=None, type=click.FloatRange(min=0),
                 help="With --executor ray: the share of a GPU each job that runs the network asks for, e.g. 0.25 "
                      "(default: 1 on a cluster with GPUs, else 0)."),
)
seed_option = click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                           help="Seed of everything random.")
# What every computing command takes besides the model, its layers and units.
how_options = _options(store_option, device_option, seed_option, quiet_option, executor_options)
common_options = _options(
    model_option, weights_option,
    click.option("--layers", default="all", show_default=True, type=LAYERS,
                 help="'all' (every conv layer and inception block) or comma-separated names."),
    click.option("--units", default="all", show_default=True, type=UNITS, help="e.g. 0-63, 3,5,9-12 or all."),
    how_options,
)
image_sample_option = click.option(
    "--image-sample", "image_sample", default=None, type=click.IntRange(min=1), metavar="N",
    help="Use a fixed sample of N of the images (spread over the folder; the same N gives the same images).")
labels_option = click.option("--labels", default=None,
                             help="Dataset labels: file,class_index CSV, or 'folders' (class per subfolder).")


def images_options(required: bool = False, what: str = "Folder of images (searched recursively), or 'imagenette'."):
    # No default beside required=True: click 8.5 takes an explicit default of None as a value given.
    images = click.option("--images", required=True, help=what) if required else \
        click.option("--images", default=None, help=what)
    return _options(images, labels_option, image_sample_option)
