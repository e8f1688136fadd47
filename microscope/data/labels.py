"""An image folder's labels: one class per top-level subfolder, or a `file,class_index` CSV, checked
line by line (one line naming the file and line for anything that is not a label)."""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path, PurePosixPath

from microscope.errors import UsageError
from microscope.data.files import read_text_file


def folder_labels(root: Path, files: list[str]) -> tuple[list[str], list[int]]:
    classes = sorted(entry.name for entry in root.iterdir()
                     if entry.is_dir() and not entry.name.startswith("."))
    loose = [name for name in files if "/" not in name]
    if loose:
        raise UsageError(f"{len(loose)} images in {root} are not inside a class folder (first: {loose[0]}); "
                         "with --labels folders every image must be in ROOT/<class>/")
    index = {name: i for i, name in enumerate(classes)}
    return classes, [index[name.split("/", 1)[0]] for name in files]


def csv_labels(csv_path: Path, root: Path, found: list[str],
                skipped: dict[str, str]) -> tuple[list[str], list[int]]:
    available = set(found)
    labelled: dict[str, int] = {}
    for number, row in _csv_rows(csv_path):
        where = f"{csv_path} line {number}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise UsageError(f"{where}: expected 2 columns 'file,class_index', found {len(row)}")
        name, value = row[0].strip(), row[1].strip()
        # ASCII digits only: int() would also take "1_000" and other scripts' digits.
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            if number == 1:  # a header row
                continue
            raise UsageError(f"{where}: class index {value!r} is not an integer")
        # The length is checked before int(), which refuses strings of over 4300 digits.
        label = int(value) if len(value.lstrip("+-0")) <= 10 else (-1 if value.startswith("-") else 2**31)
        if label < 0:
            raise UsageError(f"{where}: class index {value} is negative; class indices count from 0")
        if label >= 2**31:
            raise UsageError(f"{where}: class index {value} is too large (at most {2**31 - 1})")
        relative = PurePosixPath(name).as_posix()
        if relative not in available:
            raise UsageError(f"{where}: image {relative} {_why_unlisted(relative, root, skipped)}")
        if relative in labelled:
            raise UsageError(f"{where}: image {relative} is listed twice")
        labelled[relative] = label
    if not labelled:
        raise UsageError(f"labels file {csv_path} lists no images; expected rows 'file,class_index'")
    files = sorted(labelled)
    return files, [labelled[name] for name in files]


def _why_unlisted(relative: str, root: Path, skipped: dict[str, str]) -> str:
    """Why a name the CSV lists is not one of the dataset's images."""
    if PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
        return f"is not inside {root}; names are relative to the image folder"
    if relative in skipped:
        return f"is left out ({skipped[relative]}) under {root}"
    return f"{'does not exist' if not (root / relative).is_file() else 'is not a supported image'} under {root}"


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each row of a UTF-8 CSV; one line naming the file and line if it is not one."""
    expected = "a file,class_index CSV or 'folders'"
    if not os.path.lexists(csv_path):
        raise UsageError(f"labels file {csv_path} not found; pass {expected}")
    text = read_text_file(csv_path, "labels file", expected)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as error:
        raise UsageError(f"labels file {csv_path} line {reader.line_num}: not a readable CSV ({error})") from None
    return rows
