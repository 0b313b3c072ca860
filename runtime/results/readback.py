"""Reading a CSV that mdhr-run or mdhr-batch wrote back into a FrameTable
(for mdhr-report: reports from existing outputs)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from mdhr.aus import DECISION_THRESHOLD
from mdhr.errors import InputError
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
        raise InputError(f"{path} is not a text CSV; give a CSV written by mdhr-run or mdhr-batch") from None
    if header is None or any(name not in header for name in _FIXED):
        raise InputError(f"{path} is not an mdhr-run CSV (its header lacks "
                         f"{', '.join(n for n in _FIXED if header is None or n not in header)}); "
                         "give a CSV written by mdhr-run or mdhr-batch")
    au_names = [name[:-len("_score")] for name in header if name.endswith("_score")]
    if not au_names:
        raise InputError(f"{path} has no AU score columns (AUxx_score); give a CSV written by mdhr-run")
    flags = [name[:-len("_c")] for name in header if name.endswith("_c")]
    unpaired = sorted(set(au_names) ^ set(flags))
    if unpaired or len(set(header)) != len(header):
        what = f"{unpaired[0]} has a score or an activity column but not both" if unpaired else "a column repeats"
        raise InputError(f"{path}: {what}; the CSV is damaged: write it again with mdhr-run or mdhr-batch")
    column = {name: k for k, name in enumerate(header)}
    face_ids = "face_id" in column
    with_quality = all(name in column for name in QUALITY_COLUMNS)
    if not with_quality and any(name in column for name in QUALITY_COLUMNS):
        missing = [name for name in QUALITY_COLUMNS if name not in column]
        raise InputError(f"{path} has some face quality columns but not {missing[0]}; the CSV is damaged: write it "
                         "again with mdhr-run or mdhr-batch")
    table = FrameTable(au_names, threshold, face_ids=face_ids)
    seen: set[tuple[int, int | None]] = set()
    for number, cells in enumerate(lines, start=2):
        if len(cells) != len(header):
            raise InputError(f"{path}, line {number}: {len(cells)} cells for {len(header)} columns; the CSV is "
                             "damaged: write it again with mdhr-run")
        try:
            row = _row(cells, column, au_names, face_ids, with_quality)
            _check_order(row, table.rows[-1] if table.rows else None, seen)
        except ValueError as error:
            raise InputError(f"{path}, line {number}: {error}; the CSV is damaged: write it again with "
                             "mdhr-run") from None
        table.rows.append(row)
    if not table.rows:
        raise InputError(f"{path} has a header but no rows; nothing to report")
    return table


# Frame numbers beyond this are no video's (a 1000 fps video of a year).
MAX_FRAME = 10**11
MAX_SECONDS = 1e9  # 31 years


def _number(cells: list[str], column: dict[str, int], name: str, low: float = -math.inf, high: float = math.inf,
            empty: float | None = None) -> float:
    """A finite number in [low, high]; an empty cell is ``empty`` where that
    is allowed (no face: no AU score).  nan, inf and text are refused: the
    CSV writes no-face cells empty, never as nan."""
    text = cells[column[name]].strip()
    if not text and empty is not None:
        return empty
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} is {text[:40]!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} is {text!r}, not a finite number (a frame without a face has empty cells)")
    if not low <= value <= high:
        raise ValueError(f"{name} is {text[:40]}, outside [{low:g}, {high:g}]")
    return value


def _integer(cells: list[str], column: dict[str, int], name: str, low: int, high: int) -> int:
    text = cells[column[name]].strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} is {text[:40]!r}, not a whole number from {low} to {high}")
    return int(text)


# The cells a frame without a face has; every other one is empty.
_ALWAYS_WRITTEN = frozenset({"frame", "face_id", "timestamp", "success", "confidence"})
_NOT_FINITE = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def _check_cells(cells: list[str], header: list[str], success: bool) -> None:
    """No cell spells a non-finite number; a frame without a face has its
    face and AU cells empty (as mdhr-run writes them); activity flags are 0
    or 1."""
    for name, text in zip(header, cells):
        text = text.strip()
        if text.lower() in _NOT_FINITE:
            raise ValueError(f"{name} is {text!r}, not a finite number (a frame without a face has empty cells)")
        if not success and text and name not in _ALWAYS_WRITTEN:
            raise ValueError(f"{name} is {text[:40]!r} on a frame without a face (success 0), where it is empty")
        if name.endswith("_c") and text not in ("", "0", "1"):
            raise ValueError(f"{name} is {text[:40]!r}, not 0, 1 or empty")


def _row(cells: list[str], column: dict[str, int], au_names: list[str], face_ids: bool,
         with_quality: bool) -> FrameRow:
    frame = _integer(cells, column, "frame", 1, MAX_FRAME)
    timestamp = _number(cells, column, "timestamp", 0.0, MAX_SECONDS)
    success = _integer(cells, column, "success", 0, 1) == 1
    _check_cells(cells, list(column), success)
    box = tuple(_number(cells, column, n, -1e6, 1e6) for n in ("face_x", "face_y", "face_w", "face_h")) \
        if success else None
    face = FaceResult(success, _number(cells, column, "confidence", 0.0, 1.0, empty=0.0), box)
    scores = None
    if success:
        scores = np.asarray([_number(cells, column, f"{au}_score", -1.0, 1.0, empty=math.nan) for au in au_names],
                            dtype=np.float32)
    face_id = None
    if face_ids and cells[column["face_id"]].strip():
        face_id = _integer(cells, column, "face_id", 0, MAX_FRAME)
    quality = _quality(cells, column) if with_quality and success else None
    return FrameRow(frame - 1, timestamp, face, scores, face_id, quality)


def _check_order(row: FrameRow, previous: FrameRow | None, seen: set) -> None:
    """Frames in order, each (frame, face) once, time never going back."""
    key = (row.index, row.face_id)
    if key in seen:
        raise ValueError(f"frame {row.index + 1}" + (f", face {row.face_id}" if row.face_id is not None else "")
                         + " appears twice")
    seen.add(key)
    if previous is not None and row.index < previous.index:
        raise ValueError(f"frame {row.index + 1} comes after frame {previous.index + 1}")
    if previous is not None and row.index > previous.index and row.timestamp < previous.timestamp:
        raise ValueError(f"timestamp {row.timestamp:g} of frame {row.index + 1} is earlier than that of frame "
                         f"{previous.index + 1}")


def _quality(cells: list[str], column: dict[str, int]) -> FaceQuality:
    """A row's quality cells, finite and in range (ValueError on a damaged one)."""
    def cell(name: str) -> str:
        return cells[column[name]].strip()

    points = [_number(cells, column, name, -1e6, 1e6, empty=math.nan) for name in LANDMARK_COLUMNS]
    landmarks = None if all(math.isnan(p) for p in points) else np.asarray(points, dtype=np.float32).reshape(5, 2)
    if landmarks is not None and not np.isfinite(landmarks).all():
        raise ValueError("the landmark cells are partly empty")
    pose = tuple(_number(cells, column, name, -10.0, 10.0, empty=math.nan) for name in POSE_COLUMNS)
    since = None
    if cell("frames_since_detection"):
        since = _integer(cells, column, "frames_since_detection", 0, MAX_FRAME)
    flags = tuple(cell("flags").split(";")) if cell("flags") else ()
    if cell("flagged") not in ("0", "1") or (cell("flagged") == "1") != bool(flags):
        raise ValueError(f"flagged {cell('flagged')!r} does not match flags {cell('flags')!r}")
    return FaceQuality(landmarks, pose, _number(cells, column, "face_size", 0.0, 1e6), since, flags)
