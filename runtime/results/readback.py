"""Reading a CSV that mdhr-run or mdhr-batch wrote back into a FrameTable
(for mdhr-report: reports from existing outputs)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mdhr.aus import DECISION_THRESHOLD
from mdhr.errors import MDHRError
from mdhr_runtime.faces.quality import FaceQuality
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.results.table import LANDMARK_COLUMNS, POSE_COLUMNS, QUALITY_COLUMNS, FrameRow, FrameTable

_FIXED = ("frame", "timestamp", "success", "confidence", "face_x", "face_y", "face_w", "face_h")


def read_csv(path: str | Path, threshold: float = DECISION_THRESHOLD) -> FrameTable:
    """The table of an mdhr-run CSV (with or without ``face_id``; with the
    quality columns or, from older runs, without).  The CSV does not record
    the threshold; ``threshold`` is the one to show."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            lines = list(reader)
    except (UnicodeDecodeError, csv.Error):
        raise MDHRError(f"{path} is not a text CSV; give a CSV written by mdhr-run or mdhr-batch") from None
    if header is None or any(name not in header for name in _FIXED):
        raise MDHRError(f"{path} is not an mdhr-run CSV (its header lacks "
                        f"{', '.join(n for n in _FIXED if header is None or n not in header)}); "
                        "give a CSV written by mdhr-run or mdhr-batch")
    au_names = [name[:-len("_score")] for name in header if name.endswith("_score")]
    if not au_names:
        raise MDHRError(f"{path} has no AU score columns (AUxx_score); give a CSV written by mdhr-run")
    column = {name: k for k, name in enumerate(header)}
    face_ids = "face_id" in column
    with_quality = all(name in column for name in QUALITY_COLUMNS)
    table = FrameTable(au_names, threshold, face_ids=face_ids)
    for number, cells in enumerate(lines, start=2):
        if len(cells) != len(header):
            raise MDHRError(f"{path}, line {number}: {len(cells)} cells for {len(header)} columns; the CSV is "
                            "damaged: write it again with mdhr-run")
        try:
            table.rows.append(_row(cells, column, au_names, face_ids, with_quality))
        except ValueError as error:
            raise MDHRError(f"{path}, line {number}: {error}; the CSV is damaged: write it again with "
                            "mdhr-run") from None
    if not table.rows:
        raise MDHRError(f"{path} has a header but no rows; nothing to report")
    return table


def _row(cells: list[str], column: dict[str, int], au_names: list[str], face_ids: bool,
         with_quality: bool) -> FrameRow:
    def cell(name: str) -> str:
        return cells[column[name]]

    success = cell("success") == "1"
    box = tuple(float(cell(n)) for n in ("face_x", "face_y", "face_w", "face_h")) if success else None
    face = FaceResult(success, float(cell("confidence") or 0.0), box)
    scores = None
    if success:
        scores = np.asarray([float(cell(f"{au}_score")) if cell(f"{au}_score") else np.nan for au in au_names],
                            dtype=np.float32)
    face_id = int(cell("face_id")) if face_ids and cell("face_id") else None
    quality = _quality(cell) if with_quality and success else None
    return FrameRow(int(cell("frame")) - 1, float(cell("timestamp")), face, scores, face_id, quality)


def _quality(cell) -> FaceQuality:
    """A row's quality cells (ValueError on a damaged one)."""
    points = [cell(name) for name in LANDMARK_COLUMNS]
    landmarks = None if not any(points) else np.asarray([float(p) for p in points], dtype=np.float32).reshape(5, 2)
    pose = tuple(float(cell(name)) if cell(name) else float("nan") for name in POSE_COLUMNS)
    since = int(cell("frames_since_detection")) if cell("frames_since_detection") else None
    flags = tuple(cell("flags").split(";")) if cell("flags") else ()
    if cell("flagged") not in ("0", "1") or (cell("flagged") == "1") != bool(flags):
        raise ValueError(f"flagged {cell('flagged')!r} does not match flags {cell('flags')!r}")
    return FaceQuality(landmarks, pose, float(cell("face_size")), since, flags)
