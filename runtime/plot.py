"""The AU timeline figure (matplotlib, no display needed).

Built on ``matplotlib.figure.Figure`` with the Agg canvas directly, not
pyplot: no global backend switch, no figure registry to leak, safe to call
from any thread or a headless server.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ACTIVE_COLOUR = "#d95f02"
SCORE_COLOUR = "#1b4f72"
NO_FACE_COLOUR = "#bbbbbb"


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


def timeline_figure(times: np.ndarray, scores: np.ndarray, au_names: Sequence[str],
                    threshold: float, title: str | None = None) -> Figure:
    """One row per AU: score line (cosine, -1..1), threshold line, active
    stretches filled, frames without a face shaded (their scores are NaN)."""
    rows = max(1, len(au_names))
    figure = Figure(figsize=(12, 0.75 * rows + 1.1), layout="constrained")
    FigureCanvasAgg(figure)
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
        ax.set_ylabel(au, rotation=0, ha="right", va="center", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if len(times):
        axes[-1].set_xlim(float(times[0]), float(times[-1]) if len(times) > 1 else float(times[0]) + 1)
    heading = title or "AU activity"
    figure.suptitle(f"{heading}  (line: score; shaded: score >= {threshold:g}; grey: no face)", fontsize=11)
    return figure
