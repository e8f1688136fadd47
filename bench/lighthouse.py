"""Lighthouse scores of a built site: every category, mobile and desktop, one page of each kind.

    .venv/bin/python bench/lighthouse.py --out SITE [--preset mobile|desktop|both] [--page PATH ...]
                                         [--runs 1] [--reports DIR] [--chromium PATH] [--min 0.95]

SITE is a folder written by `build.py build` or `build.py site` (the one holding index.html). The
script serves it on 127.0.0.1 with the project's own server (microscope/site/serve.py, what
`build.py serve` runs), picks the home page, the first model's page, its layer page with the most
units, that layer's unit page with the most files (views), and, where the site has them, an
activation atlas page (<layer>/atlas/index.html) and an SAE layer and feature page (<layer>_sae/);
`--page models/m/l/3/index.html` (repeatable) measures those pages instead. Each page is run through
Lighthouse (performance, accessibility, best practices, SEO) with the mobile preset (Lighthouse's
default: a Moto G Power, simulated slow 4G and 4x CPU slowdown) and the desktop one, one page at a
time, and a table gives per page the bytes of its HTML file (the first view), the bytes the page loaded
(Lighthouse's total byte weight: HTML, CSS, scripts and the images it showed), the four scores and the
audits that cost points (binary audits that failed; performance metrics under 0.9; score in brackets).
A page Lighthouse cannot finish gets a row of errors with the reason; the others are still measured.

Lighthouse is not part of the project's dependencies: the script installs it with npm into
~/.cache/microscope-bench/lighthouse (outside the repository; `--lighthouse-dir` moves it) the first
time, after saying so. It needs Node 18.20 or newer and a Chromium (--chromium, else $CHROME_PATH, else
/usr/bin/chromium, else Playwright's). Run it by hand: it takes 15-40 s per page and preset, and the
performance score moves by a few hundredths between runs on a busy machine (`--runs 3` keeps each
page's median run). Exit status 1 when any category of any page scores below `--min` (default 0.95,
the project's bar), 2 when it could not measure.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from microscope.site import make_server  # noqa: E402

LIGHTHOUSE_VERSION = "12.8.2"
CACHE = Path.home() / ".cache" / "microscope-bench" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
SHORT = {"performance": "perf", "accessibility": "a11y", "best-practices": "bp", "seo": "seo"}
CHROME_FLAGS = "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run " \
               "--disable-background-networking --disable-component-update --disable-sync"


class Failure(Exception):
    """Cannot measure: a one-line reason."""


def node_version() -> tuple[int, ...]:
    node = shutil.which("node")
    if node is None:
        raise Failure("node is not installed; Lighthouse 12 needs Node 18.20 or newer (https://nodejs.org)")
    text = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def lighthouse_cli(folder: Path) -> Path:
    """The Lighthouse CLI installed in `folder`, installing the pinned version with npm when missing."""
    if node_version() < (18, 20):
        raise Failure(f"Node {'.'.join(map(str, node_version()))} is too old for Lighthouse {LIGHTHOUSE_VERSION}: "
                      "it needs 18.20 or newer")
    cli = folder / "node_modules" / "lighthouse" / "cli" / "index.js"
    manifest = folder / "node_modules" / "lighthouse" / "package.json"
    if cli.is_file() and json.loads(manifest.read_text()).get("version") == LIGHTHOUSE_VERSION:
        return cli
    npm = shutil.which("npm")
    if npm is None:
        raise Failure(f"npm is not installed: it is needed once, to install Lighthouse into {folder}")
    print(f"Lighthouse {LIGHTHOUSE_VERSION} is not installed in {folder}: installing it with npm "
          "(once, about 180 MB, a minute or two) ...", file=sys.stderr, flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "package.json").is_file():
        (folder / "package.json").write_text('{"private": true, "description": "bench/lighthouse.py\'s Lighthouse"}\n')
    done = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error",
                           f"lighthouse@{LIGHTHOUSE_VERSION}"], capture_output=True, text=True)
    if done.returncode != 0 or not cli.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise Failure(f"npm could not install lighthouse@{LIGHTHOUSE_VERSION} into {folder}: " + " / ".join(tail))
    print(f"installed Lighthouse {LIGHTHOUSE_VERSION} in {folder}", file=sys.stderr, flush=True)
    return cli


def find_chromium(given: str | None) -> str:
    for candidate in (given, os.environ.get("CHROME_PATH"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).is_file():
            return candidate
        if given and candidate == given:
            raise Failure(f"no Chromium at --chromium {given}")
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
        if Path(path).is_file():
            return path
    except Exception:  # noqa: BLE001 - playwright missing or its browser not downloaded
        pass
    raise Failure("no Chromium found: apt-get install chromium, or pass --chromium PATH (or set $CHROME_PATH)")


def page_units(layer: Path) -> list[Path]:
    return sorted((d for d in layer.iterdir() if d.name.isdigit() and (d / "index.html").is_file()),
                  key=lambda d: int(d.name))


def pick_pages(site: Path) -> list[tuple[str, str]]:
    """(kind, path relative to the site) of the pages to measure."""
    pages = [("home", "index.html")]
    models = sorted(d for d in (site / "models").glob("*") if (d / "index.html").is_file())
    if not models:
        return pages
    model = models[0]
    pages.append(("model", f"models/{model.name}/index.html"))
    layers = [d for d in sorted(model.iterdir()) if (d / "layer.json").is_file() and (d / "index.html").is_file()]
    sae = [d for d in layers if d.name.endswith(("_sae", "_sae_pre"))]
    plain = [d for d in layers if d not in sae]
    if plain:
        layer = max(plain, key=lambda d: len(page_units(d)))  # the first of the largest
        pages.append(("layer", f"models/{model.name}/{layer.name}/index.html"))
        units = page_units(layer)
        if units:
            unit = max(units, key=lambda d: sum(1 for _ in d.iterdir()))  # the first with the most views
            pages.append(("unit", f"models/{model.name}/{layer.name}/{unit.name}/index.html"))
    atlases = sorted(model.glob("*/atlas/index.html"))
    if atlases:
        pages.append(("atlas", atlases[0].relative_to(site).as_posix()))
    if sae:
        pages.append(("sae layer", f"models/{model.name}/{sae[0].name}/index.html"))
        units = page_units(sae[0])
        if units:
            unit = max(units, key=lambda d: sum(1 for _ in d.iterdir()))
            pages.append(("sae feature", unit.relative_to(site).as_posix() + "/index.html"))
    return pages


def failing(report: dict, category: str) -> list[str]:
    """The audits of `category` that cost points: weighted, scored, and failed (under 0.9 for metrics)."""
    found = []
    for ref in report["categories"][category]["auditRefs"]:
        audit = report["audits"].get(ref["id"], {})
        score, mode = audit.get("score"), audit.get("scoreDisplayMode")
        if ref.get("weight", 0) <= 0 or score is None or mode in ("notApplicable", "informative", "manual"):
            continue
        if score < (0.9 if mode == "numeric" else 1):
            found.append(f"{ref['id']}({score:.2f})" if mode == "numeric" else ref["id"])
    return found


def run_lighthouse(node: str, cli: Path, chromium: str, url: str, preset: str, output: Path) -> dict:
    command = [node, str(cli), url, "--output=json", f"--output-path={output}", "--quiet",
               f"--only-categories={','.join(CATEGORIES)}", f"--chrome-path={chromium}",
               f"--chrome-flags={CHROME_FLAGS}", "--disable-full-page-screenshot"]
    if preset == "desktop":
        command.append("--preset=desktop")
    env = {**os.environ, "CHROME_PATH": chromium}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0 or not output.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Failure(f"lighthouse failed on {url} ({preset}): " + " / ".join(tail))
    report = json.loads(output.read_text())
    if report.get("runtimeError"):
        raise Failure(f"lighthouse on {url} ({preset}): {report['runtimeError'].get('message')}")
    return report


def median_run(reports: list[dict]) -> dict:
    """Lighthouse's advice for several runs: the one whose performance score is the median."""
    if len(reports) == 1:
        return reports[0]
    scores = [r["categories"]["performance"]["score"] or 0 for r in reports]
    middle = statistics.median_low(scores)
    return reports[scores.index(middle)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the built site (the folder holding index.html)")
    parser.add_argument("--preset", choices=("mobile", "desktop", "both"), default="both")
    parser.add_argument("--page", action="append", default=[], help="a page to measure, relative to the site "
                        "(repeatable; default: home, model, layer, unit, atlas and SAE pages where present)")
    parser.add_argument("--runs", type=int, default=1, help="runs per page and preset; the median one is kept")
    parser.add_argument("--min", type=float, default=0.95, help="the bar every category must reach")
    parser.add_argument("--chromium", default=None)
    parser.add_argument("--lighthouse-dir", default=str(CACHE))
    parser.add_argument("--reports", default=None, help="keep the JSON reports in this folder")
    args = parser.parse_args()

    site = Path(args.out)
    try:
        if not (site / "index.html").is_file():
            raise Failure(f"no site at {site} (index.html missing): build one with `build.py build --out {site}`")
        cli = lighthouse_cli(Path(args.lighthouse_dir).expanduser())
        chromium = find_chromium(args.chromium)
        node = shutil.which("node")
        pages = [("page", p.lstrip("/")) for p in args.page] or pick_pages(site)
        for _, path in pages:
            if not (site / path).is_file():
                raise Failure(f"no page {path} in {site}")
        presets = ("mobile", "desktop") if args.preset == "both" else (args.preset,)
        server = make_server(site, 0)
        quiet(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        origin = f"http://127.0.0.1:{server.server_address[1]}/"
        keep = Path(args.reports) if args.reports else None
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
        print(f"Lighthouse {LIGHTHOUSE_VERSION}, {chromium}, site {site.resolve()} served at {origin}", flush=True)
        rows = []
        with tempfile.TemporaryDirectory() as scratch:
            run = functools.partial(run_lighthouse, node, cli, chromium)
            for kind, path in pages:
                for preset in presets:
                    rows.append(measure(run, kind, site, origin, path, preset, args.runs, keep or Path(scratch)))
        server.shutdown()
        server.server_close()
    except Failure as error:
        print(f"lighthouse bench: {error}", file=sys.stderr)
        return 2
    return print_table(rows, args.min)


def measure(run, kind: str, site: Path, origin: str, path: str, preset: str, runs: int, reports: Path) -> dict:
    """One page with one preset: the median of `runs` runs. A page Lighthouse cannot finish (it gave up on
    the 1.7 MB SAE layer page) is a row of errors with the reason, and the other pages are still measured."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", path.removesuffix("index.html")).strip("_") or "home"
    row = {"kind": kind, "path": path, "preset": preset, "html": (site / path).stat().st_size, "loaded": None,
           "scores": dict.fromkeys(CATEGORIES), "audits": "-"}
    try:
        report = median_run([run(origin + path, preset, reports / f"{name}.{preset}.{n}.json") for n in range(runs)])
    except Failure as error:
        row["audits"] = f"error: {error}"
    else:
        row["scores"] = {c: report["categories"][c]["score"] for c in CATEGORIES}
        row["loaded"] = report["audits"].get("total-byte-weight", {}).get("numericValue")
        row["audits"] = "; ".join(f"{SHORT[c]}: " + ", ".join(failing(report, c))
                                  for c in CATEGORIES if failing(report, c)) or "-"
    print(f"  {kind} {preset}: " + " ".join(f"{SHORT[c]} {fmt(s)}" for c, s in row["scores"].items()),
          file=sys.stderr, flush=True)
    return row


def print_table(rows: list[dict], bar: float) -> int:
    """The markdown table; 1 when any category of any page is under the bar (or could not be measured)."""
    print()
    print("| page | path | preset | HTML kB | loaded kB | " + " | ".join(CATEGORIES) + " | audits losing points |")
    print("|---|---|---|---:|---:|" + "---:|" * len(CATEGORIES) + "---|")
    low = []
    for row in rows:
        loaded = "-" if row["loaded"] is None else f"{row['loaded'] / 1000:.0f}"
        print(f"| {row['kind']} | {row['path']} | {row['preset']} | {row['html'] / 1000:.0f} | {loaded} | "
              + " | ".join(fmt(row["scores"][c]) for c in CATEGORIES) + f" | {row['audits']} |")
        low += [(row["path"], row["preset"], c) for c, s in row["scores"].items() if s is None or s < bar]
    print()
    if low:
        print(f"{len(low)} categories below {bar}: " + ", ".join(f"{p} {pr} {c}" for p, pr, c in low))
        return 1
    print(f"every category of every page at {bar} or above")
    return 0


def quiet(server) -> None:
    """No log line for the site's 404s (Lighthouse asks for /robots.txt): they would break up the progress."""
    made = server.RequestHandlerClass  # functools.partial(handler class, directory=...)

    class Quiet(made.func):
        def log_message(self, format, *args):
            pass

    server.RequestHandlerClass = functools.partial(Quiet, *made.args, **made.keywords)


def fmt(score) -> str:
    return "error" if score is None else f"{score:.2f}"


if __name__ == "__main__":
    sys.exit(main())
