"""FrameTable writers: CSV layout, empty cells without a face, JSON, the
timeline PNG, and atomic writes that leave nothing behind on failure."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mdhr.aus import BP4D, DISFA
from mdhr.errors import MDHRError
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.results.table import FrameTable


def face(found: bool) -> FaceResult:
    if not found:
        return FaceResult.missing()
    return FaceResult(success=True, confidence=0.987654, box=(10.04, 20.06, 100.0, 120.5))


def table_with(found: list[bool], au_set=BP4D) -> FrameTable:
    table = FrameTable(au_set.au_names)
    rng = np.random.default_rng(0)
    for i, ok in enumerate(found):
        scores = rng.uniform(-1, 1, au_set.num_aus).astype(np.float32)
        scores[0] = 0.5  # exactly the threshold: active, as the official score >= 0.5
        scores[1] = 0.4999
        table.add(CroppedFrame(index=i, timestamp=i / 30, face=face(ok), crop=None), scores if ok else None)
    return table


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_columns_and_cells(tmp_path):
    table = table_with([True, False, True])
    path = table.write_csv(tmp_path / "out" / "result.csv")  # missing folder is created
    header, *rows = read_csv(path)
    aus = BP4D.au_names
    assert header == (["frame", "timestamp", "success", "confidence", "face_x", "face_y", "face_w", "face_h"]
                      + [f"{a}_score" for a in aus] + [f"{a}_c" for a in aus])
    assert [r[0] for r in rows] == ["1", "2", "3"]  # 1-based frame numbers
    assert [r[1] for r in rows] == ["0.000", "0.033", "0.067"]
    first = dict(zip(header, rows[0]))
    assert first["success"] == "1" and first["confidence"] == "0.988"
    assert (first["face_x"], first["face_y"], first["face_w"], first["face_h"]) == ("10.0", "20.1", "100.0", "120.5")
    assert first["AU01_score"] == "0.5000" and first["AU01_c"] == "1"
    assert first["AU02_c"] == "0"
    assert all(first[f"{a}_c"] in ("0", "1") for a in aus)
    missing = dict(zip(header, rows[1]))
    assert missing["success"] == "0" and missing["confidence"] == "0.000"
    # No face: box and every AU cell left empty, never a made-up number.
    assert all(missing[c] == "" for c in header[4:])


def test_scores_for_a_faceless_frame_are_dropped():
    table = FrameTable(DISFA.au_names)
    table.add(CroppedFrame(0, 0.0, FaceResult.missing(), None), np.ones(DISFA.num_aus))
    assert table.rows[0].scores is None
    with pytest.raises(ValueError):
        table.add(CroppedFrame(1, 0.1, face(True), None), np.ones(3))


def test_json_output(tmp_path):
    table = table_with([True, False], au_set=DISFA)
    path = table.write_json(tmp_path / "r.json", metadata={"input": "v.mp4"})
    document = json.loads(path.read_text())
    assert document["au_names"] == list(DISFA.au_names)
    assert document["threshold"] == 0.5 and document["metadata"] == {"input": "v.mp4"}
    found, missing = document["frames"]
    assert found["frame"] == 1 and found["success"] is True and len(found["box"]) == 4
    assert found["au_scores"]["AU01"] == 0.5 and found["au_active"]["AU01"] is True
    assert missing["success"] is False and missing["box"] is None
    assert missing["au_scores"] is None and missing["au_active"] is None


def test_timeline_png(tmp_path):
    found = [True] * 40 + [False] * 15 + [True] * 45
    path = table_with(found).plot_timeline(tmp_path / "timeline.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[1] == 1200 and image.shape[0] > 900  # 12 rows, readable size
    assert list(tmp_path.iterdir()) == [path]


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    table = table_with([True])
    with pytest.raises(TypeError):  # metadata that JSON cannot hold: fails mid-write
        table.write_json(target, metadata={"bad": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.csv") as temporary:
            temporary.write_text("partial")
            raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_file_has_normal_permissions(tmp_path):
    path = table_with([True]).write_csv(tmp_path / "r.csv")
    assert path.stat().st_mode & 0o644 == 0o644


def test_unwritable_destinations_are_clear_errors(tmp_path):
    (tmp_path / "a_file").write_text("x")
    table = table_with([True])
    with pytest.raises(MDHRError, match="cannot write"):
        table.write_csv(tmp_path / "a_file" / "r.csv")
    with pytest.raises(MDHRError, match="folder"):
        table.write_csv(tmp_path)
