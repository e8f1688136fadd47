"""A sweep over every number and text option of every command with odd values (empty, not a number,
nan, inf, beyond 64 bits, a NUL byte, a 5,000-character name): each is refused while the arguments are
read - one line naming the option, exit code 2, no traceback, nothing written, no model loaded."""
import click
import pytest
from click.testing import CliRunner

from microscope.cli import main

NUMBER_VALUES = ["", "abc", "nan", "inf", "-inf", "1e400", "99999999999999999999", "-99999999999999999999"]
TEXT_VALUES = ["", "   ", "\x00"]
NEEDED = {"examples": ["--images", "."], "atlas": ["--images", "."], "sae": ["--images", ".", "--layers", "x"],
          "evaluate": ["--images", "."]}


def _cases():
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.name == "help":
                continue
            kind = param.type
            if isinstance(kind, click.types.IntParamType):
                values = NUMBER_VALUES
            elif isinstance(kind, click.types.FloatParamType):  # (a large finite float is a number)
                values = [value for value in NUMBER_VALUES if "9999" not in value]
            elif isinstance(kind, click.types.StringParamType):
                values = TEXT_VALUES
            else:
                continue
            for value in values:
                yield name, param.opts[0], value


CASES = list(_cases())


@pytest.mark.parametrize("command, option, value", CASES, ids=[f"{c} {o} {v!r}" for c, o, v in CASES])
def test_odd_values_are_one_line_and_exit_code_2(command, option, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    needed = NEEDED.get(command, [])
    others = [part for at in range(0, len(needed), 2) if needed[at] != option for part in needed[at:at + 2]]
    args = [command, *others, option, value]
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-1500:], result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert option in lines[0] or option.strip("-").split("-")[0] in lines[0].lower(), lines[0]  # names it
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_covers_the_commands_that_compute():
    swept = {command for command, _, _ in CASES}
    assert {"build", "examples", "featurevis", "circuits", "atlas", "sae", "site", "publish", "verify"} <= swept
    assert len(CASES) > 200


def test_a_top_beyond_memory_is_refused_before_any_work(tmp_path):
    from generated import blob_photos
    from microscope.errors import UsageError
    from microscope.run.pipeline import request_from
    from microscope.views.examples import check_memory

    (tmp_path / "photos").mkdir()
    blob_photos(tmp_path / "photos", 6, seed=1)
    values = {"model": "inceptionv1-caffe", "weights": "random", "layers": ["conv1"], "images": str(tmp_path / "photos"),
              "store": str(tmp_path / "store"), "top_k": 6, "image_batch_size": 4, "workers": 0}
    request, session = request_from(values, ["examples"])
    with pytest.raises(UsageError, match=r"^--top-k 6 for 64 units needs about 76.8 kB of memory to keep the examples, "
                                         r"more than the 10.0 kB available; pass --top-k 1 or less"):
        check_memory(request, session, available=10_000)
    check_memory(request, session, available=10**6)  # fits: nothing said
    assert not (tmp_path / "store").exists()
