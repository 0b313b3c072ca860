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

A table of every face (``face_ids=True``, ``mdhr-run --faces all``) has one
row per (frame, face) and a ``face_id`` column after ``frame``, as OpenFace's
multi-face output; a frame without any face keeps one ``success`` 0 row,
whose ``face_id`` is empty.

After the AU columns come the face's quality (``faces/quality.py``): the
five landmarks ``landmark_<name>_x``/``_y`` (frame pixels; names from
``detection.LANDMARK_NAMES``, left and right as the image shows them),
``pose_Rx``, ``pose_Ry``, ``pose_Rz`` (radians, OpenFace's names and
convention), ``face_size`` (pixels), ``frames_since_detection``,
``flagged`` (0/1) and ``flags`` (the reasons, ``;``-separated).  They are
empty without a face, and landmarks and pose without landmarks.
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
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.detection import LANDMARK_NAMES
from mdhr_runtime.faces.quality import FaceQuality
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.results.plot import MAX_FACES_PLOTTED, faces_timeline_figure, timeline_figure


@dataclass(frozen=True)
class FrameRow:
    index: int  # 0-based
    timestamp: float
    face: FaceResult
    scores: np.ndarray | None  # [num_aus] float32, None without a face
    face_id: int | None = None  # the face's track (tables of every face), None: no face
    quality: FaceQuality | None = None  # None without a face


@dataclass(frozen=True)
class RunFacts:
    """What a run says about its table besides the rows: ``complete`` is
    False when the input ended before the frame count its container declares
    (``frames_declared``); ``other_faces``: the most faces any full search saw
    besides the one scored (``--faces largest``); ``model_calls``: whole-model
    batches, or frame plus clip stage runs."""

    complete: bool = True
    frames_declared: int | None = None
    other_faces: int = 0
    model_calls: int = 0
    shortfall: str = ""  # when not complete: why (the decoder failed, or the timeline ends early)


class FrameTable:
    """Rows of per-frame results, in the order added (frame order; with
    ``face_ids``, call ``sort`` for (frame, face) order).  Rows are added with
    ``add`` only; the run's facts are set once, with ``settle``."""

    def __init__(self, au_names: Sequence[str], threshold: float = DECISION_THRESHOLD, face_ids: bool = False,
                 rows: Sequence[FrameRow] = (), facts: RunFacts = RunFacts()):
        self.au_names = tuple(au_names)
        self.threshold = float(threshold)
        self.face_ids = face_ids
        self._rows: list[FrameRow] = list(rows)
        self._facts = facts

    @classmethod
    def joined(cls, tables: Sequence["FrameTable"], facts: RunFacts) -> "FrameTable":
        """One table of the rows of ``tables`` in turn (segments of a video)."""
        first = tables[0]
        return cls(first.au_names, first.threshold, any(t.face_ids for t in tables),
                   [row for table in tables for row in table.rows], facts)

    @property
    def rows(self) -> Sequence[FrameRow]:
        return self._rows

    @property
    def facts(self) -> RunFacts:
        return self._facts

    def settle(self, facts: RunFacts) -> "FrameTable":
        """Record the run's facts (the scoring pipeline does, once, at the end)."""
        self._facts = facts
        return self

    @property
    def complete(self) -> bool:
        return self._facts.complete

    @property
    def frames_declared(self) -> int | None:
        return self._facts.frames_declared

    @property
    def shortfall(self) -> str:
        return self._facts.shortfall

    @property
    def other_faces(self) -> int:
        return self._facts.other_faces

    @property
    def model_calls(self) -> int:
        return self._facts.model_calls

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, frame: CroppedFrame, scores: np.ndarray | None, face_id: int | None = None,
            quality: FaceQuality | None = None) -> None:
        """One frame's result; ``scores`` are its AU scores, or None when no
        face was found (then the row's AU cells stay empty).  ``face_id``: the
        face's track, in a table of every face; ``quality``: the face's
        (``quality.assess``)."""
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float32).reshape(-1)
            if scores.shape[0] != len(self.au_names):
                raise ValueError(f"{scores.shape[0]} scores for {len(self.au_names)} AUs")
            if not frame.face.success:
                scores = None
        self._rows.append(FrameRow(frame.index, frame.timestamp, frame.face, scores, face_id,
                                   quality if frame.face.success else None))

    def sort(self) -> None:
        """Rows in (frame, face_id) order (the no-face row of a frame first)."""
        self._rows.sort(key=lambda row: (row.index, -1 if row.face_id is None else row.face_id))

    # -- views -------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        return (["frame"] + (["face_id"] if self.face_ids else [])
                + ["timestamp", "success", "confidence", "face_x", "face_y", "face_w", "face_h"]
                + [f"{au}_score" for au in self.au_names] + [f"{au}_c" for au in self.au_names]
                + list(QUALITY_COLUMNS))

    def ids(self) -> list[int]:
        """The face ids in the table, by their number of rows (most first)."""
        counts: dict[int, int] = {}
        for row in self.rows:
            if row.face_id is not None:
                counts[row.face_id] = counts.get(row.face_id, 0) + 1
        return sorted(counts, key=lambda i: (-counts[i], i))

    def face(self, face_id: int) -> "FrameTable":
        """The rows of one face, as a table of their own."""
        return FrameTable(self.au_names, self.threshold, rows=[row for row in self.rows if row.face_id == face_id])

    def score_matrix(self) -> np.ndarray:
        """[frames, num_aus] float32 scores, NaN where no face."""
        matrix = np.full((len(self.rows), len(self.au_names)), np.nan, dtype=np.float32)
        for i, row in enumerate(self.rows):
            if row.scores is not None:
                matrix[i] = row.scores
        return matrix

    def timestamps(self) -> np.ndarray:
        return np.asarray([row.timestamp for row in self.rows], dtype=np.float64)

    def flagged(self) -> np.ndarray:
        """[rows] 1.0 where the row's face is flagged, 0.0 where it is not, NaN
        without a face (or a quality)."""
        return np.asarray([np.nan if row.quality is None else float(row.quality.flagged) for row in self.rows])

    def _cells(self, row: FrameRow) -> list[str]:
        face = row.face
        cells = [str(row.index + 1)] + (["" if row.face_id is None else str(row.face_id)] if self.face_ids else [])
        cells += [f"{row.timestamp:.3f}", str(int(face.success)), f"{face.confidence:.3f}"]
        cells += [f"{v:.1f}" for v in face.box] if face.success and face.box else [""] * 4
        if row.scores is None:
            return cells + [""] * (2 * len(self.au_names)) + quality_cells(row.quality)
        cells += [f"{s:.4f}" if math.isfinite(s) else "" for s in row.scores]
        cells += [str(int(s >= self.threshold)) if math.isfinite(s) else "" for s in row.scores]
        return cells + quality_cells(row.quality)

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
        """``{"au_names", "threshold", "complete", "incomplete_reason",
        "frames_read", "frames_declared", "metadata", "frames": [...]}`` with one object per
        frame (per frame and face, with its ``face_id``, in a table of every
        face); ``box``, ``au_scores`` and ``au_active`` are null on frames
        without a face.  ``complete`` is false when the input was not read to
        its end, and ``incomplete_reason`` then says why (null otherwise)."""
        document = {
            "au_names": list(self.au_names),
            "threshold": self.threshold,
            "complete": self.complete,
            "incomplete_reason": self.shortfall or None,
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
            **({"face_id": row.face_id} if self.face_ids else {}),
            "timestamp": round(row.timestamp, 3),
            "success": face.success,
            "confidence": round(face.confidence, 3),
            "box": [round(float(v), 1) for v in face.box] if face.success and face.box else None,
            "au_scores": None if scores is None else dict(zip(self.au_names, scores)),
            "au_active": None if scores is None else {
                au: None if s is None else s >= self.threshold for au, s in zip(self.au_names, scores)},
            "quality": quality_json(row.quality),
        }

    def plot_timeline(self, path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
        """PNG timeline: one row per AU, its score over time, the threshold
        line, active stretches filled, frames without a face shaded grey.  A
        table of every face draws one heat-map panel per face instead, for
        the ``MAX_FACES_PLOTTED`` faces with the most rows."""
        if self.face_ids:
            figure = self._faces_figure(title)
        else:
            figure = timeline_figure(self.timestamps(), self.score_matrix(), self.au_names,
                                     self.threshold, title=title)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi)
        return Path(path)

    def _faces_figure(self, title: str | None):
        frames = sorted({row.index: row.timestamp for row in self.rows}.items())
        position = {index: k for k, (index, _) in enumerate(frames)}
        ids = self.ids()
        faces = []
        for face_id in sorted(ids[:MAX_FACES_PLOTTED]):
            scores = np.full((len(frames), len(self.au_names)), np.nan, dtype=np.float32)
            for row in self.rows:
                if row.face_id == face_id and row.scores is not None:
                    scores[position[row.index]] = row.scores
            faces.append((face_id, scores))
        times = np.asarray([t for _, t in frames], dtype=np.float64)
        return faces_timeline_figure(times, faces, self.au_names, self.threshold, title=title,
                                     left_out=max(len(ids) - MAX_FACES_PLOTTED, 0))


LANDMARK_COLUMNS = tuple(f"landmark_{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy")
POSE_COLUMNS = ("pose_Rx", "pose_Ry", "pose_Rz")
QUALITY_COLUMNS = LANDMARK_COLUMNS + POSE_COLUMNS + ("face_size", "frames_since_detection", "flagged", "flags")


def quality_cells(quality: FaceQuality | None) -> list[str]:
    """A row's quality columns (all empty without a face)."""
    if quality is None:
        return [""] * len(QUALITY_COLUMNS)
    points = [""] * len(LANDMARK_COLUMNS) if quality.landmarks is None else \
        [f"{float(v):.1f}" for v in np.asarray(quality.landmarks).reshape(-1)]
    pose = [f"{v:.4f}" if math.isfinite(v) else "" for v in quality.pose]
    since = "" if quality.since_detection is None else str(quality.since_detection)
    return points + pose + [f"{quality.face_size:.1f}", since, str(int(quality.flagged)), ";".join(quality.flags)]


def quality_json(quality: FaceQuality | None) -> dict | None:
    if quality is None:
        return None
    points = None if quality.landmarks is None else {
        name: [round(float(x), 1), round(float(y), 1)] for name, (x, y) in zip(LANDMARK_NAMES, quality.landmarks)}
    pose = None if not all(math.isfinite(v) for v in quality.pose) else dict(zip(
        ("Rx", "Ry", "Rz"), (round(v, 4) for v in quality.pose)))
    return {"landmarks": points, "pose": pose, "face_size": round(quality.face_size, 1),
            "frames_since_detection": quality.since_detection, "flagged": quality.flagged,
            "flags": list(quality.flags)}


def _number(value: float, digits: int) -> float | None:
    """A JSON-safe rounded number (NaN from a broken model becomes null)."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
