"""Every face scored: mdhr-run --faces all with a real exported bundle (the
4-frame DISFA one) on real mp4 footage of several "people" made from
tests/data/face.jpg (tests.support.crowd: the photo, and the photo mirrored
and hue-turned)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr_runtime.cli.run import main
from mdhr_runtime.sources.frames import FrameSource
from tests.support.crowd import side_by_side
from tests.support.footage import crowd_video, face_video
from tests.support.synthetic import Placement, Segment, write_video

# Each face's scores in a run of every face against a single-face run on the
# video cut to that face's half.  The two runs' face searches see frames of
# different sizes, so their first boxes differ by about a pixel; measured
# 2026-11-25: at most 1.1e-3 (untrained DISFA bundle, 12 frames).
REGION_TOLERANCE = 3e-3
FRAMES = 8


@pytest.fixture(scope="module")
def pair(tmp_path_factory, photo):
    """FRAMES frames of two faces side by side, and the video cut into halves."""
    folder = tmp_path_factory.mktemp("pair")
    video, truths = crowd_video(folder / "pair.mp4", photo, 2, side_by_side(2), FRAMES)
    frames = [f.rgb for f in FrameSource(video)]
    halves = []
    for name, part in (("left", slice(0, 320)), ("right", slice(320, 640))):
        write_video(folder / f"{name}.mp4", [np.ascontiguousarray(f[:, part]) for f in frames])
        halves.append(folder / f"{name}.mp4")
    return video, halves


@pytest.fixture(scope="module")
def every_face(detector, pair):
    return detector.predict_video(pair[0], faces="all")


def test_every_face_has_a_row_in_every_frame(every_face):
    keys = [(row.index, row.face_id) for row in every_face.rows]
    assert keys == [(i, k) for i in range(FRAMES) for k in (0, 1)]
    assert all(row.face.success and row.scores is not None for row in every_face.rows)
    left, right = every_face.face(0), every_face.face(1)
    assert all(r.face.box[0] + r.face.box[2] < 320 < s.face.box[0] for r, s in zip(left.rows, right.rows))


def test_each_face_scores_as_a_single_face_run_on_its_region(model_detector, pair):
    """The real model: its tolerance is the real features' sensitivity to where the crop lands."""
    every_face = model_detector.predict_video(pair[0], faces="all")
    for face_id, half in zip((0, 1), pair[1]):
        alone = model_detector.predict_video(half)
        mine = every_face.face(face_id).score_matrix()
        assert np.isfinite(mine).all()
        assert np.abs(mine - alone.score_matrix()).max() <= REGION_TOLERANCE


def test_largest_is_the_single_face_output_and_counts_the_others(detector, pair, every_face):
    largest = detector.predict_video(pair[0])  # the default, as before --faces existed
    assert not largest.face_ids and largest.other_faces == 1
    assert len(largest) == FRAMES and all(row.face_id is None for row in largest.rows)
    # it follows one of the two faces, frame by frame exactly as that face's track
    chosen = 0 if largest.rows[0].face.box[0] < 320 else 1
    same = every_face.face(chosen)
    np.testing.assert_array_equal(largest.score_matrix(), same.score_matrix())
    assert [r.face.box for r in largest.rows] == [r.face.box for r in same.rows]


def test_frames_without_faces_and_short_tracks_lose_no_row(detector, photo, tmp_path):
    """Person 1 is there in the first frame only (a one-frame track, scored
    in a padded window); nobody is there in frames 6-9."""
    def script(index):
        if 6 <= index < 10:
            return [None, None]
        return [Placement(170, 180, 160), Placement(470, 180, 150) if index == 0 else None]

    video, _ = crowd_video(tmp_path / "short.mp4", photo, 2, script, 14)
    table = detector.predict_video(video, faces="all")
    keys = [(row.index, row.face_id) for row in table.rows]
    assert keys == [(0, 0), (0, 1)] + [(i, 0) for i in range(1, 6)] + [(i, None) for i in range(6, 10)] + \
        [(i, 0) for i in range(10, 14)]
    one_frame = table.face(1).rows
    assert len(one_frame) == 1 and np.isfinite(one_frame[0].scores).all()
    assert all(not row.face.success and row.scores is None for row in table.rows if row.face_id is None)


def test_cli_writes_face_ids_in_csv_json_and_a_plot_per_face(disfa_short_bundle, pair, tmp_path):
    out, js, png = tmp_path / "all.csv", tmp_path / "all.json", tmp_path / "all.png"
    result = CliRunner().invoke(main, [str(pair[0]), "--model", str(disfa_short_bundle), "--out", str(out),
                                       "--json", str(js), "--plot", str(png), "--faces", "all", "--windows",
                                       "official"])
    assert result.exit_code == 0, result.output
    assert "2 face track(s)" in result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["frame", "face_id", "timestamp"]
    assert [(r["frame"], r["face_id"]) for r in rows][:4] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    document = json.loads(js.read_text())
    assert [f["face_id"] for f in document["frames"][:2]] == [0, 1]
    assert document["metadata"]["faces"] == "all" and document["metadata"]["min_face"] == 40
    assert png.stat().st_size > 10_000


def test_cli_largest_notes_the_other_faces_and_keeps_the_old_columns(disfa_short_bundle, pair, tmp_path):
    out = tmp_path / "one.csv"
    result = CliRunner().invoke(main, [str(pair[0]), "--model", str(disfa_short_bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: up to 1 other face(s) were in the frame besides the one scored; --faces all" in result.output
    assert out.read_text().splitlines()[0].startswith("frame,timestamp,success,confidence,face_x")


@pytest.mark.parametrize("args,expected", [
    (["--faces", "all", "--aligned"], "--faces all needs face detection"),
    (["--faces", "all", "--min-face", "0"], "--min-face must be a face size in pixels"),
])
def test_bad_face_options_get_one_line(disfa_short_bundle, pair, tmp_path, args, expected):
    result = CliRunner().invoke(main, [str(pair[0]), "--model", str(disfa_short_bundle),
                                       "--out", str(tmp_path / "x.csv"), *args])
    assert result.exit_code == 2 and expected in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def test_camera_scores_every_face(disfa_short_bundle, pair, tmp_path):
    out = tmp_path / "live.csv"
    result = CliRunner().invoke(main, ["--camera", str(pair[0]), "--model", str(disfa_short_bundle),
                                       "--out", str(out), "--faces", "all"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["frame"]), r["face_id"]) for r in rows] == [(i, k) for i in range(1, FRAMES + 1) for k in "01"]


def test_official_windows_without_a_face_skip_the_model(detector, photo, tmp_path):
    """Same rows as the model gives on every window, fewer model calls."""
    from mdhr_runtime.pipeline import clip_batches

    video, has_face = face_video(tmp_path / "gap.mp4", photo,
                                 (Segment("clean", 8), Segment("empty", 16), Segment("clean", 4)))
    table = detector.predict_video(video, windows="official")
    batches = list(clip_batches(video, detector.bundle.input_shape))
    assert table.model_calls == sum(b.has_face.any() for b in batches) < len(batches)
    expected = [s for b in batches for _, s in b.rows(detector.predict_clips(b.clips))]
    # (the face returning after 16 face-less frames may be found a few frames
    # late: the sparse search; both runs track alike)
    assert [row.scores is None for row in table.rows] == [s is None for s in expected]
    assert sum(s is None for s in expected) >= 16
    for row, want in zip(table.rows, expected):
        if want is not None:
            np.testing.assert_allclose(row.scores, want, rtol=0, atol=1e-6)
