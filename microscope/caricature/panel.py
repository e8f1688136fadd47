"""The caricature view's show half (no torch): a layer page's gallery - each photo, its caricature and its
DeepDream side by side, each with the units most active in it - its `caricatures` list in layer.json, and the
model page's strip of one photo's caricatures through the layers (`through_layers`).

The stored PNGs become WebP beside the layer page (`caricatures/<photo>-<image>.webp`), re-encoded only when they
changed. A photo's name and class come from the user's folder and labels: they reach the page as text only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from microscope.store import CaricatureResult
from microscope.view import LayerPage, Panel, Shown
from microscope.web.images import encode_image

FOLDER = "caricatures"  # beside the layer page
QUALITY = 82
IMAGES = {"photo": "the photo as the network sees it", "caricature": "its caricature",
          "deepdream": "its DeepDream"}


@dataclass
class LayerCaricatures:
    result: CaricatureResult
    sources: dict[tuple[str, str], Path]  # (photo key, image) -> its stored PNG


def read_caricatures(store, model: str, layer: str) -> LayerCaricatures | None:
    """The layer's caricatures whose images check out (the others are reported damaged), or None."""
    path = store.caricature_result_file(model, layer)
    result = store.read(path, CaricatureResult)
    if result is None or not images_intact(store, path, result):
        return None
    return LayerCaricatures(result, {(p.photo, kind): store.caricature_image_file(model, layer, p.photo, kind)
                                     for p in result.photos for kind in IMAGES})


def images_intact(store, path: Path, result: CaricatureResult) -> bool:
    """Whether every image the record at `path` vouches for is as written (the first that is not is said once)."""
    for name, stamp in result.files.items():
        problem = stamp.problem(path.parent / name)
        if problem:
            store.damaged(path.parent / name, problem)
            return False
    return True


def site_file(photo: str, image: str) -> str:
    """Where an image goes, relative to the layer's folder on the site."""
    return f"{FOLDER}/{photo}-{image}.webp"


def entries(result: CaricatureResult) -> list[dict]:
    """layer.json's `caricatures`: one entry per photo, paths relative to the layer's folder."""
    return [{"photo": site_file(p.photo, "photo"), "caricature": site_file(p.photo, "caricature"),
             "deepdream": site_file(p.photo, "deepdream"), "key": p.photo, "name": p.name, "label": p.label,
             "cosine": round(p.cosine, 4), "cosine_next": round(_next_best(p.cosines, i), 4),
             "dream_gain": round(p.norm_deepdream / p.norm_photo, 3) if p.norm_photo else None,
             "top": {kind: [u.unit for u in getattr(p, f"top_{kind}")] for kind in IMAGES}}
            for i, p in enumerate(result.photos)]


def settings(result: CaricatureResult) -> dict:
    return {"size": result.size, "seed": result.seed, "precision": result.precision,
            "caricature": result.caricature, "deepdream": result.deepdream}


def _next_best(cosines: list[float], own: int) -> float:
    """The highest cosine of a caricature to another photo of the set (0 for a set of one)."""
    others = [v for j, v in enumerate(cosines) if j != own]
    return max(others) if others else 0.0


def provenance(result: CaricatureResult) -> str:
    car, dream = result.caricature, result.deepdream
    return (f"Caricatures: {car.get('steps')} steps of the {car['image'].get('name', 'lucid')} feature-vis recipe "
            f"maximising dot(a(x), a(photo)) x max({car['cossim_floor']}, cos)^{car['cossim_pow']} over every channel "
            f"and position of {result.layer} ({car['version']}). DeepDreams: {dream['octaves']} octaves "
            f"(scale {dream['octave_scale']}) of {dream['steps']} steps of {dream['step'] * 255:.1f}/255 on the photo, "
            f"jitter {dream['jitter']} px, maximising the layer's squared activation ({dream['version']}). "
            f"{result.size} px, seed {result.seed}, {result.precision}.")


class CaricatureShown(Shown):
    name = "caricature"
    title = "Caricatures and DeepDreams"
    level = "layer"
    budget = {}  # per layer, not per unit: the layer page's gallery (site/estimate.py counts it per layer)

    def applies(self, layer) -> bool:
        return False  # a layer without them says nothing: they need photos

    def read(self, store, model, layer) -> LayerCaricatures | None:
        return read_caricatures(store, model.name, layer.name)

    def layer_fields(self, data: LayerCaricatures) -> dict:
        return {"caricatures": entries(data.result), "caricature_settings": settings(data.result)}

    def layer_json(self, data: LayerCaricatures) -> dict:
        return {"photos": len(data.result.photos)}

    def layer_panel(self, data: LayerCaricatures, page: LayerPage) -> Panel:
        result = data.result
        rows = []
        for entry, photo in zip(entries(result), result.photos):
            images = []
            for kind, what in IMAGES.items():
                page.write(entry[kind], _webp(data.sources[photo.photo, kind]))
                units = [{"unit": u.unit, "mean": u.mean, **(page.other("", result.layer, u.unit) or {})}
                         for u in getattr(photo, f"top_{kind}")]
                images.append({"kind": kind, "src": entry[kind], "alt": f"{photo.name}: {what}", "units": units})
            rows.append({**entry, "images": images, "anchor": f"photo-{photo.photo}"})
        return Panel(data={"rows": rows, "size": result.size, "provenance": provenance(result),
                           "layer": result.layer}, json={}, provenance=[provenance(result)])


def _webp(source: Path) -> bytes:
    with Image.open(source) as image:
        return encode_image(image.convert("RGB"), "WEBP", QUALITY)


def through_layers(rows: list[dict]) -> list[dict]:
    """The model page's strips: for each photo (in the first layer's order), its caricature at every layer that has
    one, in the model's layer order. `rows`: the model page's layer rows, each with `href` and `caricatures`."""
    photos: dict[str, dict] = {}
    for row in rows:
        for entry in row.get("caricatures") or []:
            found = photos.setdefault(entry["key"], {"key": entry["key"], "name": entry["name"], "label": entry["label"],
                                                     "photo": None, "layers": []})
            base = row["href"].rsplit("/", 1)[0]
            found["photo"] = found["photo"] or f"{base}/{entry['photo']}"
            found["layers"].append({"layer": row["name"], "caricature": f"{base}/{entry['caricature']}",
                                    "deepdream": f"{base}/{entry['deepdream']}",
                                    "href": f"{row['href']}#photo-{entry['key']}", "cosine": entry["cosine"]})
    return list(photos.values())


SHOWN = CaricatureShown()
