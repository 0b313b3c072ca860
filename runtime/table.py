"""Per-frame results and their writers (CSV, JSON, timeline plot).

``FrameTable`` collects one row per frame: face found or not, confidence,
face box, and the AU scores when there was a face.  Writers never leave a
partial file: each writes a hidden temporary file in the target folder and
renames it over the target only when complete (``atomic_path``).

CSV columns follow OpenFace's habits: ``frame`` (1-based), ``timestamp``
(seconds), ``success`` (0/1), ``confidence``, ``face_x``, ``face_y``,
``face_w``, ``face_h``, then ``<AU>_score`` for every AU and ``<AU>_c``
(1 when the score reaches the threshold, as the official evaluation's
``score >= 0.5``).  Box and AU cells are empty on frames without a face.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mdhr.aus import DECISION_THRESHOLD
from mdhr_runtime.clips import ClipBatch
from mdhr_runtime.crop import CroppedFrame
from mdhr_runtime.atomic import atomic_path
from mdhr_runtime.tracking import FaceResult


@dataclass(frozen=True)
class FrameRow:
    index: int  # 0-based
    timestamp: float
    face: FaceResult
    scores: np.ndarray | None  # [num_aus] float32, None without a face


class FrameTable:
    """Rows of per-frame results, in the order added (frame order)."""

    def __init__(self, au_names: Sequence[str], threshold: float = DECISION_THRESHOLD):
        self.au_names = tuple(au_names)
        self.threshold = float(threshold)
        self.rows: list[FrameRow] = []
        # Set by AUDetector.predict_video: False when the video ended before
        # the frame count its container declares (truncated or damaged).
        self.complete = True
        self.frames_declared: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, frame: CroppedFrame, scores: np.ndarray | None) -> None:
        """One frame's result; ``scores`` are its AU scores, or None when no
        face was found (then the row's AU cells stay empty)."""
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float32).reshape(-1)
            if scores.shape[0] != len(self.au_names):
                raise ValueError(f"{scores.shape[0]} scores for {len(self.au_names)} AUs")
            if not frame.face.success:
                scores = None
        self.rows.append(FrameRow(frame.index, frame.timestamp, frame.face, scores))

    def add_batch(self, batch: ClipBatch, scores: np.ndarray) -> None:
        """All real frames of a batch with the model's [B, T, num_aus] scores."""
        for frame, frame_scores in batch.rows(scores):
            self.add(frame, frame_scores)

    # -- views -------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        return (["frame", "timestamp", "success", "confidence", "face_x", "face_y", "face_w", "face_h"]
                + [f"{au}_score" for au in self.au_names] + [f"{au}_c" for au in self.au_names])

    def score_matrix(self) -> np.ndarray:
        """[frames, num_aus] float32 scores, NaN where no face."""
        matrix = np.full((len(self.rows), len(self.au_names)), np.nan, dtype=np.float32)
        for i, row in enumerate(self.rows):
            if row.scores is not None:
                matrix[i] = row.scores
        return matrix

    def timestamps(self) -> np.ndarray:
        return np.asarray([row.timestamp for row in self.rows], dtype=np.float64)

    def _cells(self, row: FrameRow) -> list[str]:
        face = row.face
        cells = [str(row.index + 1), f"{row.timestamp:.3f}", str(int(face.success)), f"{face.confidence:.3f}"]
        cells += [f"{v:.1f}" for v in face.box] if face.success and face.box else [""] * 4
        if row.scores is None:
            return cells + [""] * (2 * len(self.au_names))
        cells += [f"{s:.4f}" if math.isfinite(s) else "" for s in row.scores]
        cells += [str(int(s >= self.threshold)) if math.isfinite(s) else "" for s in row.scores]
        return cells

    # -- writers -----------------------------------------------------------

    def write_csv(self, path: str | Path) -> Path:
        with atomic_path(path) as temporary:
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(self.columns)
                for row in self.rows:
                    writer.writerow(self._cells(row))
        return Path(path)

    def write_json(self, path: str | Path, metadata: dict | None = None) -> Path:
        """``{"au_names", "threshold", "complete", "frames_read",
        "frames_declared", "metadata", "frames": [...]}`` with one object per
        frame; ``box``, ``au_scores`` and ``au_active`` are null on frames
        without a face.  ``complete`` is false when the input ended early."""
        document = {
            "au_names": list(self.au_names),
            "threshold": self.threshold,
            "complete": self.complete,
            "frames_read": len(self.rows),
            "frames_declared": self.frames_declared,
            "metadata": metadata or {},
            "frames": [self._json_row(row) for row in self.rows],
        }
        with atomic_path(path) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, allow_nan=False)
                handle.write("\n")
        return Path(path)

    def _json_row(self, row: FrameRow) -> dict:
        face = row.face
        scores = None if row.scores is None else [_number(s, 4) for s in row.scores]
        return {
            "frame": row.index + 1,
            "timestamp": round(row.timestamp, 3),
            "success": face.success,
            "confidence": round(face.confidence, 3),
            "box": [round(float(v), 1) for v in face.box] if face.success and face.box else None,
            "au_scores": None if scores is None else dict(zip(self.au_names, scores)),
            "au_active": None if scores is None else {
                au: None if s is None else s >= self.threshold for au, s in zip(self.au_names, scores)},
        }

    def plot_timeline(self, path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
        """PNG timeline: one row per AU, its score over time, the threshold
        line, active stretches filled, frames without a face shaded grey."""
        from mdhr_runtime.plot import timeline_figure

        figure = timeline_figure(self.timestamps(), self.score_matrix(), self.au_names,
                                 self.threshold, title=title)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
        return Path(path)


def _number(value: float, digits: int) -> float | None:
    """A JSON-safe rounded number (NaN from a broken model becomes null)."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
