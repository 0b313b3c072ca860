"""The one colour scheme of every result view: the report's timelines and
colour scale, the plots (line and heat map) and the annotated video.

A score below the threshold is a blue, dark at -1 and pale just under the
threshold; a score at or above it an orange, light at the threshold and
dark at 1: the hue says active or not, the shade how far from the
threshold.  Grey: no face.  The report's script receives these stops in
its data, so the page paints exactly what ``score_rgb`` computes.
"""
from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]

INACTIVE_STOPS: tuple[RGB, RGB] = ((8, 48, 107), (198, 219, 239))  # score -1 .. just under the threshold
ACTIVE_STOPS: tuple[RGB, RGB] = ((253, 174, 107), (166, 54, 3))  # the threshold .. score 1
ABSENT: RGB = (217, 217, 217)  # no face
ACTIVE: RGB = (217, 95, 2)  # an active AU where one colour stands for it (bars, plot fill)
INACTIVE: RGB = (66, 114, 170)  # an inactive one's (bars, the plot's score line)
DIFFERENCE_STOPS: tuple[RGB, RGB] = ((255, 255, 255), (84, 39, 143))  # |difference| 0 .. 1 or more


def hex_colour(rgb: RGB) -> str:
    return "#" + "".join(f"{v:02x}" for v in rgb)


def _mix(a: RGB, b: RGB, f: float) -> RGB:
    return tuple(int(round(x + (y - x) * f)) for x, y in zip(a, b))


def score_rgb(score: float, threshold: float) -> RGB:
    """The colour of one score (NaN: no face)."""
    if not np.isfinite(score):
        return ABSENT
    score = float(np.clip(score, -1.0, 1.0))
    if score >= threshold:
        return _mix(*ACTIVE_STOPS, (score - threshold) / max(1.0 - threshold, 1e-6))
    return _mix(*INACTIVE_STOPS, (score + 1.0) / max(threshold + 1.0, 1e-6))


def score_colormap(threshold: float, steps: int = 256):
    """``score_rgb`` as a matplotlib colormap over [-1, 1] (grey for masked
    cells), for heat maps drawn with vmin=-1, vmax=1."""
    from matplotlib.colors import ListedColormap

    values = np.linspace(-1.0, 1.0, steps)
    colours = [tuple(c / 255 for c in score_rgb(v, threshold)) for v in values]
    return ListedColormap(colours, name="mdhr-score").with_extremes(bad=tuple(c / 255 for c in ABSENT))


def css_gradient(threshold: float) -> str:
    """A CSS linear-gradient from -1 (left) to 1 (right) with the hue's
    change at the threshold: the report's colour scale."""
    at = (threshold + 1.0) / 2.0 * 100.0
    (a, b), (c, d) = INACTIVE_STOPS, ACTIVE_STOPS
    return (f"linear-gradient(to right, {hex_colour(a)} 0%, {hex_colour(b)} {at:.2f}%, "
            f"{hex_colour(c)} {at:.2f}%, {hex_colour(d)} 100%)")


def for_script() -> dict:
    """The stops the report's script paints with."""
    return {"inactive": [list(INACTIVE_STOPS[0]), list(INACTIVE_STOPS[1])],
            "active": [list(ACTIVE_STOPS[0]), list(ACTIVE_STOPS[1])], "absent": list(ABSENT),
            "difference": [list(DIFFERENCE_STOPS[0]), list(DIFFERENCE_STOPS[1])]}
