"""Write microscope/concepts/wordnet_imagenet.json.gz: the 1000 ILSVRC-2012 classes and every WordNet
ancestor of theirs (lemmas, gloss, hypernyms), so the concept vocabulary (microscope/concepts/vocabulary.py)
can label a unit "dog" without WordNet installed at run time.

ImageNet's wnids are WordNet 3.0 noun offsets ("n" + the 8-digit offset in data.noun); WordNet 3.1 renumbered
its offsets, so the source must be 3.0 - Debian's package wordnet-base:

    apt-get install wordnet-base
    python scripts/wordnet_imagenet.py --synset-words ../shared/data/imagenet-labels/synset_words.txt

The output's bytes depend only on the inputs (sorted keys, gzip mtime 0), so tests can check that the
committed file is what this script makes.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "microscope" / "concepts" / "wordnet_imagenet.json.gz"
WNID = re.compile(r"^n\d{8}$")
# WordNet's licence asks that its copyright notice travel with every copy of the database
NOTICE = ("WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  "
          "Licence and disclaimer: WORDNET-LICENSE beside this file.")
HYPERNYMS = ("@", "@i")  # hypernym, instance hypernym: the links up the noun hierarchy


def parse_data_line(line: str) -> tuple[str, dict] | None:
    """One synset of data.noun: `offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (ptr offset pos
    source/target)* | gloss` (wndb(5)); w_cnt is two hex digits, p_cnt three decimal ones. Licence lines
    (they start with two spaces) give None."""
    if line.startswith(" "):
        return None
    fields, _, gloss = line.partition(" | ")
    tokens = fields.split()
    offset, w_cnt = tokens[0], int(tokens[3], 16)
    lemmas = [tokens[4 + 2 * k].replace("_", " ") for k in range(w_cnt)]
    at = 4 + 2 * w_cnt
    p_cnt = int(tokens[at])
    parents = []
    for k in range(p_cnt):
        symbol, target, pos = tokens[at + 1 + 4 * k: at + 4 + 4 * k]
        if symbol in HYPERNYMS and pos == "n":
            parents.append("n" + target)
    return "n" + offset, {"lemmas": lemmas, "gloss": gloss.strip(), "parents": parents}


def read_nouns(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8") as lines:
        return dict(parsed for parsed in map(parse_data_line, lines) if parsed is not None)


def read_classes(path: Path) -> list[str]:
    """The wnids of a synset_words.txt; ILSVRC-2012's class index is the position in sorted wnid order,
    so a file in another order (or not 1000 distinct wnids) is refused rather than silently re-indexed."""
    wnids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [w for w in wnids if not WNID.match(w)]
    if bad:
        raise SystemExit(f"{path}: not a wnid: {bad[0]!r}")
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or wnids != sorted(wnids):
        raise SystemExit(f"{path}: expected the 1000 ILSVRC-2012 wnids in sorted (class index) order")
    return wnids


def with_ancestors(classes: list[str], nouns: dict[str, dict]) -> dict[str, dict]:
    """The classes' synsets and every synset above them."""
    kept, todo = {}, list(classes)
    while todo:
        wnid = todo.pop()
        if wnid in kept:
            continue
        if wnid not in nouns:
            raise SystemExit(f"{wnid} is not a noun synset of this data.noun (is it WordNet 3.0?)")
        kept[wnid] = nouns[wnid]
        todo.extend(nouns[wnid]["parents"])
    return kept


def package_version(package: str) -> str | None:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                              capture_output=True, text=True, check=False)
    except OSError:
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout.strip()


def encoded(document: dict) -> bytes:
    """Deterministic bytes: sorted keys, fixed separators, gzip with no name and mtime 0."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return gzip.compress(text.encode("ascii"), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-noun", type=Path, default=Path("/usr/share/wordnet/data.noun"),
                        help="WordNet 3.0's data.noun (default: Debian wordnet-base's)")
    parser.add_argument("--synset-words", type=Path, required=True,
                        help='the ILSVRC-2012 synset_words.txt ("n01440764 tench, Tinca tinca" lines)')
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT})")
    args = parser.parse_args(argv)

    classes = read_classes(args.synset_words)
    synsets = with_ancestors(classes, read_nouns(args.data_noun))
    version = package_version("wordnet-base")
    source = "WordNet 3.0 (Princeton), Debian package wordnet-base" + (f" {version}" if version else "")
    args.out.write_bytes(encoded({"source": source, "license": NOTICE, "classes": classes,
                                     "synsets": synsets}))
    print(f"{args.out}: {len(classes)} classes, {len(synsets)} synsets")


if __name__ == "__main__":
    main()
