"""The AU timeline figure (matplotlib, no display needed).

Built on ``matplotlib.figure.Figure`` with the Agg canvas directly, not
pyplot: no global backend switch, no figure registry to leak, safe to call
from any thread or a headless server.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mdhr.aus import au_description
from mdhr_runtime.results import palette

# The report's and the annotated video's colours (palette.py).
ACTIVE_COLOUR = palette.hex_colour(palette.ACTIVE)
SCORE_COLOUR = palette.hex_colour(palette.INACTIVE_STOPS[0])
NO_FACE_COLOUR = palette.hex_colour(palette.ABSENT)


def _figure(size: tuple[float, float]):
    """A figure on the Agg canvas.  matplotlib is imported here, on the first
    plot: it costs a third of a second and tens of MB that a run without
    --plot never needs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the True stretches of ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2], edges[1::2]))


def _spans(times: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """Time spans of the True stretches, each widened by half a frame so a
    single frame is visible."""
    if len(times) == 0:
        return []
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return [(times[a] - step / 2, times[b - 1] + step / 2) for a, b in _runs(mask)]


def _named(au: str, between: str = "\n") -> str:
    """An AU's code with its FACS name (AU12 lip corner puller)."""
    name = au_description(au)
    return f"{au}{between}{name}" if name else au


def timeline_figure(times: np.ndarray, scores: np.ndarray, au_names: Sequence[str],
                    threshold: float, title: str | None = None):
    """One row per AU: score line (cosine, -1..1), threshold line, active
    stretches filled, frames without a face shaded (their scores are NaN)."""
    rows = max(1, len(au_names))
    figure = _figure((12, 0.75 * rows + 1.1))
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    no_face = np.isnan(scores).all(axis=1) if scores.size else np.zeros(len(times), dtype=bool)
    no_face_spans = _spans(times, no_face)
    low = min(0.0, float(np.nanmin(scores))) if np.isfinite(scores).any() else 0.0
    for k, (ax, au) in enumerate(zip(axes, au_names)):
        series = scores[:, k]
        for start, stop in no_face_spans:
            ax.axvspan(start, stop, color=NO_FACE_COLOUR, alpha=0.5, linewidth=0)
        active = np.nan_to_num(series, nan=-np.inf) >= threshold
        ax.fill_between(times, low, 1.0, where=active, color=ACTIVE_COLOUR, alpha=0.25,
                        linewidth=0, step="mid")
        ax.plot(times, series, color=SCORE_COLOUR, linewidth=1.0)
        ax.axhline(threshold, color=ACTIVE_COLOUR, linewidth=0.8, linestyle="--")
        ax.set_ylim(low, 1.0)
        ax.set_yticks([v for v in (0.0, threshold, 1.0) if low <= v <= 1.0])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel(_named(au), rotation=0, ha="right", va="center", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if len(times):
        axes[-1].set_xlim(float(times[0]), float(times[-1]) if len(times) > 1 else float(times[0]) + 1)
    heading = title or "AU activity"
    figure.suptitle(f"{heading}  (line: score; shaded: score >= {threshold:g}; grey: no face)", fontsize=11)
    return figure


# A figure of more faces than this gets too small to read; the rest are named.
MAX_FACES_PLOTTED = 6


def faces_timeline_figure(times: np.ndarray, faces: list[tuple[int, np.ndarray]], au_names: Sequence[str],
                          threshold: float, title: str | None = None, left_out: int = 0):
    """One panel per face: its AU scores over the video's time (``times``,
    one per frame) as a heat map in the report's colours (palette.py: blue
    below the threshold, orange at or above it), one row per AU, grey where
    that face was not found.  ``faces``
    holds (face_id, scores [frames, AUs] with NaN where absent)."""
    rows = max(1, len(faces))
    figure = _figure((12, rows * (0.22 * len(au_names) + 0.55) + 1.0))
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    extent = (float(times[0]) - step / 2, float(times[-1]) + step / 2, len(au_names) - 0.5, -0.5) if len(times) \
        else (0, 1, len(au_names) - 0.5, -0.5)
    colours = palette.score_colormap(threshold)
    image = None
    for ax, (face_id, scores) in zip(axes, faces):
        grid = np.ma.masked_invalid(scores.T)
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=colours, vmin=-1, vmax=1,
                          extent=extent)
        ax.set_yticks(range(len(au_names)), [_named(au, " ") for au in au_names], fontsize=7)
        ax.set_ylabel(f"face {face_id}", rotation=0, ha="right", va="center", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    if image is not None:
        bar = figure.colorbar(image, ax=list(axes), shrink=0.8, label="AU score")
        bar.set_ticks(sorted({-1.0, 0.0, threshold, 1.0}))
    heading = title or "AU activity per face"
    more = f"; {left_out} more face(s) not drawn" if left_out else ""
    figure.suptitle(f"{heading}  (blue: below {threshold:g}, orange: active; grey: face not found{more})",
                    fontsize=11)
    return figure
