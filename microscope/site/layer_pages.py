"""A layer's own pages: its grid in pieces, and layer.json.

One page holding every tile of a large layer is slow: inception_5b's 1,024 units made 316 kB of HTML and
an SAE of inception_4c's 4,096 features 1.7 MB, which a phone takes seconds to load and lay out, and which
Lighthouse could not even finish measuring (bench/NOTES.md). So the grid is cut into pieces of
`TILES_PER_PIECE` tiles, in unit order:

    index.html      the layer's panels and the first piece, then a pager linking to every piece's page
    page-<n>.html   piece n (from 2) as a plain page: every unit has a real link without scripts
    tiles-<n>.js    piece n's tiles for static/layer.js, which adds them as the reader scrolls or filters
    layer.json      every unit's record, one per line: the full table stays here only

All three make their tiles with one macro (`grid_tile` in templates/macros.html), so a piece the script
adds is the same markup, escaped the same way, as the tiles the page came with.
"""
from __future__ import annotations

import json

from microscope.site.output import SiteWriter
from microscope.site.render import Renderer
from microscope.store import ModelRecord

# 120 tiles fill a desktop screen or two (10 to 12 columns of 96 px tiles); the first view of inception_5b
# is then 39 kB of HTML, which a phone on slow 4G paints in 1.1 s where 240 tiles took 1.6-1.9 s
# (bench/NOTES.md). 120 is a whole number of rows for 2 to 6, 8, 10, 12 and 15 columns.
TILES_PER_PIECE = 120
ROOT = "../../../"  # from models/<model>/<layer>/ to the site's root


def cut(units: list[dict]) -> list[list[dict]]:
    """The grid's pieces, in unit order (one empty piece for a layer without units)."""
    size = TILES_PER_PIECE
    return [units[start:start + size] for start in range(0, len(units), size)] or [[]]


def page_name(number: int) -> str:
    """Piece 1 is the layer page itself."""
    return "index.html" if number == 1 else f"page-{number}.html"


def tiles_name(number: int) -> str:
    return f"tiles-{number}.js"


def pager(pieces: list[list[dict]]) -> list[dict]:
    """Each piece's page and the first and last unit it holds."""
    return [{"number": number, "href": page_name(number),
             "first": piece[0]["unit"] if piece else None, "last": piece[-1]["unit"] if piece else None}
            for number, piece in enumerate(pieces, 1)]


def write_layer_pages(writer: SiteWriter, renderer: Renderer, layer_dir: str, model: ModelRecord, record: dict,
                      panels: list[dict], concepts_page: str | None = None, try_page: str | None = None) -> None:
    """index.html, the other pieces' pages and scripts, and layer.json of a layer (`record`: its layer.json);
    the pages link to the model's `concepts_page` and `try_page` (files in the model's folder) where it has them."""
    pieces = cut(record["units"])
    pages = pager(pieces)
    title = model.title or model.name
    common = {"root": ROOT, "model": model, "model_title": title, "layer": record, "pieces": pages,
              "concepts_href": f"../{concepts_page}" if concepts_page else None,
              "try_href": f"../{try_page}" if try_page else None}
    writer.write_text(f"{layer_dir}/index.html", renderer.render(
        "layer.html", page_title=f"{record['layer']} - {title}", units=pieces[0], panels=panels, **common))
    for number in range(2, len(pieces) + 1):
        piece, units = pages[number - 1], pieces[number - 1]
        writer.write_text(f"{layer_dir}/{piece['href']}", renderer.render(
            "layer_page.html", page_title=f"{record['layer']} units {piece['first']}-{piece['last']} - {title}",
            units=units, piece=piece, previous=pages[number - 2], next=pages[number] if number < len(pages) else None,
            **common))
        name = tiles_name(number)
        writer.write_text(f"{layer_dir}/{name}", renderer.render(
            "layer_tiles.js", key=name, units=units, layer_name=record["layer"]))
    writer.write_text(f"{layer_dir}/layer.json", layer_json_text(record))


def layer_json_text(record: dict) -> str:
    """layer.json: the layer's fields indented, its units one compact line each (a third smaller than
    indenting every unit's fields, and still one line per unit to read or diff)."""
    head = json.dumps({key: value for key, value in record.items() if key != "units"}, indent=1, allow_nan=False)
    units = ",\n".join(json.dumps(unit, separators=(",", ":"), allow_nan=False) for unit in record["units"])
    return head.removesuffix("\n}") + (',\n "units": [\n' + units + "\n ]\n}\n" if units else ',\n "units": []\n}\n')
