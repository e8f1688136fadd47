"""--labels-file (layer -> unit -> label YAML): every bad file is one line naming the file and, where the
bytes or a key are at fault, the line; a FIFO is refused without blocking. Real files through the real
command line (click's runner, in this process)."""
import os
import signal

import pytest
from click.testing import CliRunner

from microscope.cli import main


def site_with_labels(tmp_path, labels) -> list[str]:
    """stderr lines of `site` given these labels; the store is empty, so good labels fail after them."""
    (tmp_path / "empty-store").mkdir(exist_ok=True)
    def expire(signum, frame):
        raise TimeoutError("reading the labels file blocked")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    try:
        result = CliRunner().invoke(main, ["site", "--store", str(tmp_path / "empty-store"), "--out",
                                           str(tmp_path / "site"), "--labels-file", str(labels), "--quiet"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code == 2, result.output
    return result.stderr.strip().splitlines()


@pytest.mark.parametrize("data, message", [
    (b"conv1:\n  0: curve\n  99999999999999999999: edge\n", "line 3: unit 99999999999999999999 of layer 'conv1' is too large"),
    (b"conv1:\n  -3: curve\n", "line 2: unit -3 of layer 'conv1' is negative"),
    (b"conv1:\n  0: curve\n  zero: edge\n", "line 3: unit 'zero' of layer 'conv1' is not a unit number"),
    (b"conv1:\n  1: a\n  3.5: b\n", "line 3: unit '3.5' of layer 'conv1' is not a unit number"),
    (b"conv1:\n  1: a\n  0x1: b\n", "line 3: unit 1 of layer 'conv1' is labelled twice"),
    (b"conv1:\n  1: a\nconv2: {}\nconv1:\n  2: b\n", "line 4: layer 'conv1' is listed twice"),
    (b"conv1:\n  1:\n", "line 2: the label of unit 1 of layer 'conv1' must be text or {label, note}"),
    (b"conv1: [curve, edge]\n", "line 1: layer 'conv1' must map unit numbers to labels"),
    (b"- conv1\n", "line 1: the file is not a mapping of layer names"),
    (b"conv1:\n  0: curve\n  1: caf\xe9\n", "line 3 is not UTF-8 text (byte 0xe9)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1 is not UTF-8 text (byte 0x89)"),
    (b"conv1:\n  0: a\x00b\n", "line 2 holds a NUL byte"),
    (b"conv1:\n\t1: a\n", "line 2 is not valid YAML (found character '\\t' that cannot start any token)"),
    (b"conv1: !!python/object/apply:os.system [echo hi]\n", "is not valid YAML (could not determine a constructor"),
    (b"conv1:\n  2001-02-30: a\n", "is not usable YAML (day is out of range for month)"),
    (b"[" * 1000, "is not usable YAML (maximum recursion depth exceeded"),  # the parser recurses
])
def test_bad_labels_file_is_one_line_with_the_line(tmp_path, data, message):
    labels = tmp_path / "units.yaml"
    labels.write_bytes(data)
    lines = site_with_labels(tmp_path, labels)
    assert len(lines) == 1 and lines[0].startswith(f"error: labels file {labels}") and message in lines[0], lines


def test_labels_file_that_is_a_fifo_folder_or_missing(tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "folder.yaml").mkdir()
    for name, problem in [("fifo.yaml", f"labels file {tmp_path / 'fifo.yaml'} is not a regular file (a FIFO)"),
                          ("folder.yaml", f"labels file {tmp_path / 'folder.yaml'} is not a regular file (a folder)"),
                          ("none.yaml", f"cannot read labels file {tmp_path / 'none.yaml'}: No such file or directory")]:
        lines = site_with_labels(tmp_path, tmp_path / name)
        assert lines == [f"error: {problem}; pass a UTF-8 YAML file of layer -> unit -> label"]


def test_good_labels_file_gets_past_the_labels(tmp_path):
    labels = tmp_path / "units.yaml"
    labels.write_bytes(b"\xef\xbb\xbf# Excel's BOM, quoted and plain unit numbers\nconv1:\n  '7': curve\n"
                       b"  8: {label: edge, note: seen twice}\nconv2: {}\n")
    lines = site_with_labels(tmp_path, labels)
    assert len(lines) == 1 and lines[0].startswith("error: no models in the artifact store"), lines
