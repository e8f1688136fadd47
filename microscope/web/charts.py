"""Chart geometry for inline SVG: numbers in, coordinates out; the template draws them.

Outside the `site` package because the views' panels draw charts too: importing anything of
`microscope.site` runs its builder, which imports every view (tests/test_imports.py keeps it one way).

Activation histograms of post-ReLU units are dominated by the bin at zero, so counts are drawn on a
log scale (log(1 + count)), which keeps the rare strong activations - the interesting part - visible.
"""
from __future__ import annotations

import math

WIDTH, HEIGHT = 560, 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 8, 8, 8, 22


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}"
    return f"{value:g}"


def histogram(counts: list[int], edges: list[float], marks: dict[str, float] | None = None) -> dict | None:
    """Bars as one SVG path, x-axis ticks, and optional vertical marks (e.g. the top example)."""
    if not counts or len(edges) != len(counts) + 1 or edges[-1] <= edges[0]:
        return None
    low, high = edges[0], edges[-1]
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    peak = math.log1p(max(counts)) or 1.0

    def x_of(value: float) -> float:
        return PAD_LEFT + (value - low) / (high - low) * plot_w

    # One outline over all bins (a step line closed along the axis): a few bytes per bin.
    base = PAD_TOP + plot_h
    commands = [f"M{x_of(low):.1f} {base:.1f}"]
    for count, right in zip(counts, edges[1:]):
        height = math.log1p(count) / peak * plot_h if count > 0 else 0.0
        commands.append(f"V{base - height:.1f}H{x_of(right):.1f}")
    commands.append(f"V{base:.1f}Z")
    ticks = [{"x": round(x_of(t), 1), "label": _label(t)} for t in nice_ticks(low, high)]
    drawn_marks = []
    for name, value in (marks or {}).items():
        if value is not None and low <= value <= high:
            x = x_of(value)
            # Labels near the right edge go on the left of their line, so they stay inside.
            drawn_marks.append({"name": name, "x": round(x, 1), "anchor": "end" if x > 0.7 * WIDTH else "start",
                                "label_x": round(x - 3 if x > 0.7 * WIDTH else x + 3, 1)})
    return {"width": WIDTH, "height": HEIGHT, "path": "".join(commands), "base": base, "top": PAD_TOP,
            "left": PAD_LEFT, "right": WIDTH - PAD_RIGHT, "ticks": ticks, "marks": drawn_marks,
            "total": int(sum(counts)), "low": low, "high": high}


def sparkline(values: list[float], width: int = 120, height: int = 28) -> dict | None:
    """A small line of an optimisation curve (objective per recorded step), as an SVG path."""
    values = [v for v in values if math.isfinite(v)]
    if len(values) < 2:
        return None
    if len(values) > 40:  # more points than a 120 px line can show
        values = [values[round(i * (len(values) - 1) / 39)] for i in range(40)]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    points = [f"{i * step:.0f} {height - 2 - (v - low) / span * (height - 4):.1f}" for i, v in enumerate(values)]
    return {"width": width, "height": height, "path": "M" + "L".join(points), "first": values[0], "last": values[-1]}


def network_diagram(layers: list[dict]) -> dict:
    """A left-to-right strip of boxes, one per layer: height ~ spatial size, width ~ channels.

    `layers` items need name, channels, height, url (or None). Sizes are on log scales so that a
    1024-channel 7x7 block and a 64-channel 112x112 convolution both stay legible.
    """
    boxes = []
    x = 10.0
    max_h = 120.0
    biggest = max([max(1, l.get("height") or 1) for l in layers] or [1])
    for layer in layers:
        width = 8 + 6 * math.log2(max(2, layer.get("channels") or 2))
        height = 20 + (max_h - 20) * math.log2(max(1, layer.get("height") or 1) + 1) / math.log2(biggest + 1)
        boxes.append({**layer, "x": round(x, 1), "y": round(10 + (max_h - height) / 2, 1),
                      "w": round(width, 1), "h": round(height, 1), "cx": round(x + width / 2, 1)})
        x += width + 18
    # Room after the last box for its slanted label.
    return {"boxes": boxes, "width": round(x + 60, 1), "height": max_h + 70, "mid": 10 + max_h / 2}
