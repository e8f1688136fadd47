"""The Jinja environment: templates from the package `microscope.templates`, autoescaped, strict.

The templates and static files are edited in the repository's top-level `templates/` and `static/`
folders, which the package maps to `microscope.templates` and `microscope.static` (pyproject.toml):
an editable install reads them there, an installed wheel carries copies.

Autoescaping is what keeps a layer called `a<b"c` or a label holding `<script>` inert: every value
reaches the HTML through Jinja, which escapes `<`, `>`, `&` and both quotes, also inside attributes.
StrictUndefined makes a template typo an error at build time instead of an empty spot on a page.
"""
from __future__ import annotations

import importlib.resources
import json
import math
from pathlib import Path

import jinja2
from markupsafe import Markup

from microscope.errors import UsageError
from microscope.views.shown import SHOWN

STATIC_SUFFIXES = (".css", ".js", ".svg")  # what the site ships of microscope.static


def _folder(package: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError:
        raise UsageError(f"the site's files ({package}) are missing from this installation of microscope; "
                         "reinstall it (pip install microscope, or pip install -e . in a checkout)") from None


def number(value, digits: int = 4) -> str:
    """A compact human number: 4 significant digits, no exponent for everyday magnitudes."""
    if value is None:
        return "–"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e6:
        text = f"{value:.{digits}g}"
        return text if "e" not in text else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return f"{value:.{digits - 1}e}"


def count(value) -> str:
    """1150 -> "1,150": a number of things, as the pages write them."""
    return f"{int(value):,}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def megabytes(value) -> str:
    return f"{value / 1e6:.1f} MB"


def sentence(items) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    items = [str(item) for item in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def script_json(value) -> Markup:
    """`value` as JSON to put in a script (the search index, a layer's pieces). json.dumps leaves "<"
    alone; escaping it keeps "</script>" or "<!--" in a label harmless even where the text is inlined
    into a page. Lighter than Jinja's tojson, which escapes > & and ' too: a piece of tiles is HTML
    and would grow by half."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def environment(templates: Path | None = None) -> jinja2.Environment:
    templates = templates or _folder("microscope.templates")
    # A view registered from outside the package (a plugin, a test) brings its partial in its own folder.
    folders = [str(templates)] + [str(view.template_folder) for view in SHOWN.values() if view.template_folder]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = number
    env.filters["percent"] = percent
    env.filters["count"] = count
    env.filters["megabytes"] = megabytes
    env.filters["sentence"] = sentence
    env.filters["script_json"] = script_json
    return env


def static_files(static: Path | None = None) -> dict[str, bytes]:
    """The site's CSS, scripts and icon, by path relative to the static folder."""
    static = static or _folder("microscope.static")
    return {p.relative_to(static).as_posix(): p.read_bytes() for p in sorted(static.rglob("*"))
            if p.is_file() and p.suffix in STATIC_SUFFIXES}


class Renderer:
    def __init__(self, env: jinja2.Environment | None = None):
        self.env = env or environment()

    def render(self, template: str, **context) -> str:
        text = self.env.get_template(template).render(**context)
        # Templates are indented for people; the shipped pages need no blank-line padding.
        return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"
