"""`build.py verify`: check every record of an artifact store (and a built site) and say what is damaged.

A build already checks what it reads and recomputes what is damaged; verify does the same checks for a
whole store at once, without a model or a dataset, so that a user can ask "can I trust this store?"
after a crash, a full disk or a copy between machines. Each record is decoded against its schema and
each data file it vouches for is compared with the size and sha256 recorded when it was written.

With `--repair`, every damaged piece is removed together with the record that vouches for it: the
next build sees it missing and recomputes exactly that piece (a layer's examples, one render, a pair
of layers' circuits, a thumbnail...). Nothing that is intact is touched.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from microscope.store import PassShard, PatchIndex, RecordError, Store, ThumbStamps, load_npz
from microscope.site.manifest import listed_file_problems, path_problem

DECODE_ERRORS = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, UnicodeDecodeError,
                 RecordError)


@dataclass
class Damage:
    path: Path  # the damaged file
    problem: str
    remove: list[Path]  # what --repair removes: the file and the record that vouches for it


@dataclass
class Report:
    records: int = 0
    files: int = 0
    damaged: list[Damage] = field(default_factory=list)


def verify_store(root: Path) -> Report:
    """Every record of the store under `root` decoded, and every file it vouches for checked."""
    report, store = Report(), Store(root)
    for path, kind in store.record_files():
        report.records += 1
        try:
            record = kind.from_json(json.loads(path.read_text(encoding="utf-8")))
        except DECODE_ERRORS as error:
            report.damaged.append(Damage(path, _say(error), [path]))
            continue
        for file, stamp in store.stamped_files(record, path.parent).items():
            report.files += 1
            problem = stamp.problem(file)
            if problem:  # a thumbnail's stamp stays: the next build sees it missing and writes it alone
                report.damaged.append(Damage(file, problem, [file] if kind is ThumbStamps else [file, path]))
            elif store.is_patch_index(file):  # the index vouches for its pack
                pack = store.patch_pack_file(file)
                report.files += 1
                problem = _pack_problem(file, pack)
                if problem:
                    report.damaged.append(Damage(pack, problem, [pack, file, path]))
    for path in store.pass_shard_files():
        report.records += 1
        try:
            PassShard.from_arrays(load_npz(path))
        except DECODE_ERRORS as error:
            report.damaged.append(Damage(path, _say(error), [path]))
    return report


def repair(damaged: list[Damage], root: Path) -> int:
    """Remove every damaged piece and the record vouching for it (only inside `root`); returns how many files."""
    removed = 0
    for path in {path for damage in damaged for path in damage.remove}:
        if root.resolve() in path.resolve().parents and path.is_file():
            path.unlink()
            removed += 1
    return removed


def verify_site(site: Path) -> list[Damage]:
    """Every file the site's manifest lists, checked; a damaged one is removed by --repair so that the
    next `build.py site` writes it again (an unchanged-looking file would otherwise be kept)."""
    damaged = []
    for relative, problem in listed_file_problems(site):
        removable = path_problem(relative) is None and (site / relative).is_file()
        damaged.append(Damage(site / relative, problem, [site / relative] if removable else []))
    return damaged


def _pack_problem(index: Path, pack: Path) -> str | None:
    """A patch pack's .bin checked against the stamp its (already verified) index holds."""
    try:
        stamp = PatchIndex.from_arrays(load_npz(index)).bin_stamp
    except DECODE_ERRORS as error:
        return f"its index {index.name} does not decode: {_say(error)}"
    return stamp.problem(pack)


def _say(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text or type(error).__name__
