"""One declaration per setting (microscope/settings.py): the click options, the checks, the older flag
spellings and the store key all come from a view's settings record, and the preview's presets are typed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from microscope.errors import UsageError
from microscope.run.preview import PREVIEW
from microscope.settings import Settings, declared, renamed_arguments, renamed_flags, setting
from microscope.views.registry import VIEWS


@dataclass(frozen=True)
class Toy(Settings):
    top_k: int = setting(48, "--top-k", "Kept per unit.", low=1, old=("--top",))
    rate: float = setting(0.5, "--rate", "A fraction.", low=0, high=1)
    workers: int | None = setting(None, "--workers", "Processes.", low=0, keyed=False)
    kinds: tuple[str, ...] = setting(("a", "b"), "--kinds", "Comma-separated.",
                                     parse=lambda text: tuple(text.split(",")))
    image_format: str = setting("png", "--image-format", "Format.", choices=("png", "webp"), old=("--format",))


def command_of(cls):
    """A click command taking cls's options and returning the record they make."""
    def run(**values):
        click.echo(repr(cls.from_values(values)))
    for option in reversed(cls.options()):
        run = option(run)
    return click.command()(run)


def test_the_command_line_comes_from_the_declarations():
    runner = CliRunner()
    found = runner.invoke(command_of(Toy), ["--top-k", "3", "--rate", "0.25", "--kinds", "x,y", "--image-format", "webp"])
    assert found.exit_code == 0, found.output
    assert found.output.strip() == repr(Toy(top_k=3, rate=0.25, kinds=("x", "y"), image_format="webp"))
    assert runner.invoke(command_of(Toy), []).output.strip() == repr(Toy())  # every default written once
    for bad in (["--top-k", "0"], ["--rate", "1.5"], ["--image-format", "gif"], ["--workers", "-1"]):
        result = runner.invoke(command_of(Toy), bad)
        assert result.exit_code == 2 and bad[0] in result.output, bad
    helped = runner.invoke(command_of(Toy), ["--help"]).output
    assert "Kept per unit." in helped and "default: 48" in helped and "default: a,b" in helped


def test_a_record_checks_itself_whoever_makes_it():
    with pytest.raises(UsageError, match="--top-k must be at least 1, got 0"):
        Toy(top_k=0)
    with pytest.raises(UsageError, match="--rate must be at most 1, got 2"):
        dataclasses.replace(Toy(), rate=2)  # a preset goes through the same checks
    with pytest.raises(UsageError, match="--image-format must be one of: png, webp"):
        Toy(image_format="gif")
    assert Toy(kinds="c,d").kinds == ("c", "d")  # text from a notebook is parsed as the command line does


def test_keyed_settings_are_those_that_change_stored_results():
    assert Toy().keyed() == {"top_k": 48, "rate": 0.5, "kinds": ("a", "b"), "image_format": "png"}


def test_older_flag_spellings_still_work_with_a_note():
    said = []
    table = renamed_flags([Toy])
    assert table == {"--top": "--top-k", "--format": "--image-format"}
    assert renamed_arguments(["--top", "5", "--format=webp", "--rate", "0.1"], table, said.append) == \
        ["--top-k", "5", "--image-format=webp", "--rate", "0.1"]
    assert said == ["note: --top is now --top-k; the old name still works for now",
                    "note: --format is now --image-format; the old name still works for now"]


def test_every_view_declares_each_setting_once_with_a_unique_flag():
    for view in VIEWS.values():
        if view.settings_type is None:
            continue
        fields = declared(view.settings_type)
        flags = [option.flag for _, option, _ in fields] + [old for _, option, _ in fields for old in option.old]
        assert len(flags) == len(set(flags)), view.name
        assert view.default_settings() == view.settings_type.from_values({})  # one default, whatever the way in
    build = [view for view in VIEWS.values() if view.in_build and view.settings_type]
    names = [name for view in build for name, _, _ in declared(view.settings_type)]
    assert len(names) == len(set(names)), "two views of `build` declare a setting of the same name"


def test_the_preview_presets_are_settings_the_views_declare():
    for view, changes in PREVIEW.views.items():
        assert set(changes) <= {name for name, _, _ in declared(VIEWS[view].settings_type)}, view
        dataclasses.replace(VIEWS[view].default_settings(), **changes)  # and values they accept
