"""What a report shows of a FrameTable: per face, the AU scores on the
video's frame grid, the statistics per AU, and the timeline's columns.

The timeline has one column per frame of the CSV up to ``MAX_COLUMNS``
(wider than most screens); a longer video is thinned to ``MAX_COLUMNS``
columns of equal runs of frames, each showing the *highest* score in its
run, so a short activation stays visible rather than being averaged away.
The statistics always use every frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# 4096 columns: one per frame for up to 2 min 16 s at 30 fps; an hour is
# thinned to ~26 frames a column (under a second each).
MAX_COLUMNS = 4096


@dataclass(frozen=True)
class AUStats:
    au: str
    active_share: float | None  # of the frames where this face was scored
    mean_score: float | None
    longest_frames: int
    longest_seconds: float


@dataclass
class FaceSeries:
    """One face's scores on the video's frame grid ([frames, AUs], NaN where
    it was not scored), and its quality flag there ([frames]: 1 flagged, 0
    not, NaN where it was not scored or the table has no quality)."""

    face_id: int | None
    scores: np.ndarray
    flagged: np.ndarray | None = None

    @property
    def flagged_share(self) -> float | None:
        """The share of this face's rows with quality that are flagged."""
        if self.flagged is None or not np.isfinite(self.flagged).any():
            return None
        return float(np.nanmean(self.flagged))

    @property
    def label(self) -> str:
        return "face" if self.face_id is None else f"face {self.face_id}"


@dataclass
class RunSummary:
    au_names: tuple[str, ...]
    threshold: float
    frame_indices: np.ndarray  # [frames] 0-based frame numbers of the CSV's frames
    times: np.ndarray  # [frames] seconds
    faces: list[FaceSeries]
    frames_with_face: int

    @property
    def frames(self) -> int:
        return len(self.frame_indices)

    def stats(self, face: FaceSeries) -> list[AUStats]:
        step = float(np.median(np.diff(self.times))) if self.frames > 1 else 0.0
        result = []
        for k, au in enumerate(self.au_names):
            series = face.scores[:, k]
            scored = np.isfinite(series)
            active = np.nan_to_num(series, nan=-np.inf) >= self.threshold
            longest = longest_run(active)
            result.append(AUStats(au, float(active[scored].mean()) if scored.any() else None,
                                  float(series[scored].mean()) if scored.any() else None,
                                  longest, longest * step))
        return result

    def most_active(self, count: int = 3) -> list[str]:
        """The AUs active on the largest share of face frames (all faces)."""
        scores = np.concatenate([f.scores for f in self.faces]) if self.faces else np.zeros((0, len(self.au_names)))
        scored = np.isfinite(scores).any(axis=1)
        if not scored.any():
            return []
        share = (np.nan_to_num(scores[scored], nan=-np.inf) >= self.threshold).mean(axis=0)
        order = [k for k in np.argsort(-share, kind="stable") if share[k] > 0]
        return [f"{self.au_names[k]} {share[k]:.0%}" for k in order[:count]]


def summarise(table) -> RunSummary:
    """A FrameTable's faces on its frame grid (one series for a table of the
    largest face, one per face_id for a table of every face)."""
    frames = sorted({row.index: row.timestamp for row in table.rows}.items())
    position = {index: k for k, (index, _) in enumerate(frames)}
    ids = sorted(table.ids()) if table.face_ids else [None]
    faces = []
    for face_id in ids:
        scores = np.full((len(frames), len(table.au_names)), np.nan, dtype=np.float32)
        flagged = np.full(len(frames), np.nan, dtype=np.float32)
        for row in table.rows:
            if row.face_id == face_id and row.scores is not None:
                scores[position[row.index]] = row.scores
            if row.face_id == face_id and row.quality is not None:
                flagged[position[row.index]] = float(row.quality.flagged)
        faces.append(FaceSeries(face_id, scores, flagged))
    with_face = len({row.index for row in table.rows if row.face.success})
    return RunSummary(tuple(table.au_names), table.threshold, np.asarray([i for i, _ in frames], dtype=np.int64),
                      np.asarray([t for _, t in frames], dtype=np.float64), faces, with_face)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest stretch of True in ``mask``."""
    if not mask.any():
        return 0
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[0::2]).max())


def frames_per_column(frames: int, max_columns: int = MAX_COLUMNS) -> int:
    return max(1, math.ceil(frames / max_columns))


def thin(scores: np.ndarray, per_column: int) -> np.ndarray:
    """[frames, AUs] -> [columns, AUs]: the highest score of each run of
    ``per_column`` frames (NaN only where the face is absent for the whole run)."""
    if per_column == 1:
        return scores
    frames, aus = scores.shape
    columns = math.ceil(frames / per_column)
    padded = np.full((columns * per_column, aus), np.nan, dtype=np.float32)
    padded[:frames] = scores
    blocks = padded.reshape(columns, per_column, aus)
    present = np.isfinite(blocks).any(axis=1)
    highest = np.where(np.isfinite(blocks), blocks, -np.inf).max(axis=1)
    return np.where(present, highest, np.nan).astype(np.float32)


def encode_cells(scores: np.ndarray, threshold: float) -> bytes:
    """[columns, AUs] scores -> AU-major bytes: 0..254 for -1..1, 255 where
    absent (a byte a cell keeps an hour's timeline to a few MB).  A byte is
    nudged by one step where rounding would carry a score across the
    threshold, so the page shows active exactly where the CSV says 1."""
    grid = scores.T
    cells = np.full(grid.shape, 255, dtype=np.int32)
    present = np.isfinite(grid)
    values = grid[present]
    steps = np.round((np.clip(values, -1, 1) + 1) / 2 * 254).astype(np.int32)
    shown = steps / 254 * 2 - 1
    steps += ((values >= threshold) & (shown < threshold)).astype(np.int32)
    steps -= ((values < threshold) & (shown >= threshold)).astype(np.int32)
    cells[present] = np.clip(steps, 0, 254)
    return cells.astype(np.uint8).tobytes()


def encode_flags(flagged: np.ndarray, per_column: int) -> bytes:
    """[frames] flags (1, 0, NaN) -> one byte a column: 254 where any frame
    of the column is flagged, 0 where none is, 255 where none has a quality."""
    thinned = thin(flagged.reshape(-1, 1).astype(np.float32), per_column)[:, 0]
    cells = np.full(thinned.shape, 255, dtype=np.uint8)
    present = np.isfinite(thinned)
    cells[present] = np.where(thinned[present] > 0, 254, 0)
    return cells.tobytes()


def encode_differences(first: np.ndarray, second: np.ndarray) -> bytes:
    """|first - second| per cell ([columns, AUs] each), AU-major: 0..254 for
    0..1 (more is shown as 1), 255 where either is absent."""
    difference = np.abs(first - second).T
    cells = np.full(difference.shape, 255, dtype=np.uint8)
    present = np.isfinite(difference)
    cells[present] = np.round(np.clip(difference[present], 0, 1) * 254).astype(np.uint8)
    return cells.tobytes()
