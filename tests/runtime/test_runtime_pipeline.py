"""The whole runtime on real videos with a real exported MDHR bundle:
AUDetector, mdhr-run, and their refusals.  The runtime never imports torch."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mdhr.errors import MDHRError
from mdhr_runtime import AUDetector
from mdhr_runtime.cli.run import main
from mdhr_runtime.timing import STAGES
from tests.support import DATA
from tests.support.footage import face_video
from tests.support.synthetic import Segment, write_video


@pytest.fixture(scope="module")
def footage(tmp_path_factory, photo):
    """37 frames at 640x360: a moving face, a face-less stretch, the face again."""
    return face_video(tmp_path_factory.mktemp("video") / "clip.mp4", photo,
                      (Segment("moving", 20), Segment("empty", 10), Segment("clean", 7)))


def test_predict_video_gives_every_frame(detector, footage):
    video, has_face = footage
    table = detector.predict_video(video)
    assert [row.index for row in table.rows] == list(range(len(has_face)))
    assert [row.face.success for row in table.rows] == has_face
    scores = table.score_matrix()
    assert scores.shape == (37, 8)
    assert np.isnan(scores[~np.array(has_face)]).all()
    assert np.isfinite(scores[has_face]).all() and (np.abs(scores[has_face]) <= 1).all()
    assert np.diff(table.timestamps()).min() > 0


def test_predict_video_equals_the_model_on_its_own_clips(detector, footage):
    """The table holds exactly what the model says about the clips the
    pipeline built (windows of T frames, padding dropped)."""
    from mdhr_runtime.pipeline import clip_batches

    video, has_face = footage
    expected = []
    for batch in clip_batches(video, detector.bundle.input_shape):
        scores = detector.predict_clips(batch.clips)
        expected += [s for _, s in batch.rows(scores)]
    table = detector.predict_video(video, windows="official")
    for row, want in zip(table.rows, expected):
        if want is None:
            assert row.scores is None
        else:
            np.testing.assert_allclose(row.scores, want, rtol=0, atol=1e-6)


def test_predict_clips_any_count(detector):
    clips = np.random.default_rng(0).standard_normal((3, 4, 3, 224, 224), dtype=np.float32)
    together = detector.predict_clips(clips)
    assert together.shape == (3, 4, 8)
    np.testing.assert_allclose(detector.predict_clips(clips[1:2])[0], together[1], rtol=0, atol=1e-6)
    with pytest.raises(MDHRError, match=r"takes \[N, 4, 3, 224, 224\]"):
        detector.predict_clips(clips[:, :3])


@pytest.mark.parametrize("make,expected", [
    (lambda c: (c * 255).astype(np.uint8), "clips of type uint8 given; the model takes float32 normalised"),
    (lambda c: c.astype(np.complex64), "clips of type complex64 given"),
    (lambda c: np.where(np.arange(c.size).reshape(c.shape) == 7, np.nan, c), "clips hold 1 NaN or infinite values"),
    (lambda c: np.where(np.arange(c.size).reshape(c.shape) == 7, np.inf, c), "clips hold 1 NaN or infinite values"),
    (lambda c: np.abs(c) * 60, "far outside the normalised range"),
])
def test_predict_clips_refuses_what_is_not_normalised_float(detector, make, expected):
    clips = np.random.default_rng(1).standard_normal((2, 4, 3, 224, 224), dtype=np.float32).clip(-2, 2)
    with pytest.raises(MDHRError, match=re.escape(expected)):
        detector.predict_clips(make(clips))
    with pytest.raises(MDHRError, match=re.escape(expected.split(";")[0])):
        detector.runner.infer(make(clips[:1]))  # the stage API refuses the same
    assert detector.predict_clips(clips.astype(np.float64)).shape == (2, 4, 8)  # any float is fine


def test_threshold_outside_the_cosine_range_is_refused(disfa_short_bundle):
    for threshold in (5, -2, float("nan")):
        with pytest.raises(MDHRError, match=r"outside \[-1, 1\]"):
            AUDetector(disfa_short_bundle, threshold=threshold)


def test_a_foreign_onnx_graph_in_a_bundle_is_named(disfa_short_bundle, footage, tmp_path):
    import onnx

    clips = onnx.helper.make_tensor_value_info("clips", onnx.TensorProto.FLOAT, [1, 2, 3])
    scores = onnx.helper.make_tensor_value_info("au_scores", onnx.TensorProto.FLOAT, [1, 2, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["clips"], ["au_scores"])], "g",
                                   [clips], [scores])
    bundle = tmp_path / "strange"
    bundle.mkdir()
    shutil.copy(disfa_short_bundle / "mdhr.json", bundle)
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), bundle / "model.onnx")
    # Official windows run the whole-model graph (a centred run never opens it).
    refused([str(footage[0]), "--model", str(bundle), "--out", str(tmp_path / "o.csv"), "--windows", "official"],
            "is not the model its card describes", "export the bundle again")


def test_profile_reports_each_stage(detector, footage):
    report = detector.profile_video(footage[0])
    assert report["frames"] == 37 and report["frames_with_face"] == 27
    assert set(report["stages"]) == set(STAGES)
    assert all(stage["seconds"] > 0 for stage in report["stages"].values())


def test_cli_writes_csv_json_and_plot(disfa_short_bundle, footage, tmp_path):
    video, has_face = footage
    out, js, png = tmp_path / "au.csv", tmp_path / "au.json", tmp_path / "au.png"
    result = CliRunner().invoke(main, [str(video), "--model", str(disfa_short_bundle), "--out", str(out),
                                       "--json", str(js), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" in result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:8] == ["frame", "timestamp", "success", "confidence", "face_x", "face_y", "face_w", "face_h"]
    assert list(rows[0])[8:10] == ["AU01_score", "AU02_score"] and list(rows[0])[-1] == "AU26_c"
    assert [int(r["frame"]) for r in rows] == list(range(1, 38))
    for row, face in zip(rows, has_face):
        assert row["success"] == str(int(face))
        if face:
            assert row["AU12_c"] == str(int(float(row["AU12_score"]) >= 0.5))
        else:
            assert row["AU01_score"] == "" and row["AU26_c"] == ""
    document = json.loads(js.read_text())
    assert document["metadata"]["untrained"] is True and len(document["frames"]) == 37
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_threshold_and_aligned_frames(disfa_short_bundle, tmp_path):
    frames = tmp_path / "crops"
    frames.mkdir()
    face = cv2.imread(str(DATA / "face.jpg"))[150:400, 190:388]
    for i in range(6):
        cv2.imwrite(str(frames / f"frame{i + 1}.png"), np.roll(face, i, axis=1))
    out = tmp_path / "aligned.csv"
    result = CliRunner().invoke(main, [str(frames), "--model", str(disfa_short_bundle), "--out", str(out),
                                       "--aligned", "--threshold", "-1"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 6 and all(r["success"] == "1" for r in rows)
    assert all(r[f"{au}_c"] == "1" for r in rows for au in ("AU01", "AU26"))  # every score >= -1


def test_video_without_faces_is_not_an_error(disfa_short_bundle, tmp_path):
    video = tmp_path / "empty_room.mp4"
    write_video(video, [np.full((360, 640, 3), 90 + i, np.uint8) for i in range(9)])
    out = tmp_path / "none.csv"
    result = CliRunner().invoke(main, [str(video), "--model", str(disfa_short_bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out, newline="")))
    assert len(rows) == 9 and {r["success"] for r in rows} == {"0"} and {r["AU01_score"] for r in rows} == {""}
    assert "no face anywhere" in result.output


def refused(args, *expected):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.output, result.output
    for text in expected:
        assert text in last, last


def test_bad_inputs_give_one_line_and_no_output(disfa_short_bundle, footage, tmp_path):
    out = tmp_path / "o.csv"
    bundle = str(disfa_short_bundle)
    refused([str(tmp_path / "missing.mp4"), "--model", bundle, "--out", str(out)], "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    refused([str(corrupt), "--model", bundle, "--out", str(out)], "corrupt.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    refused([str(empty), "--model", bundle, "--out", str(out)], "empty.mp4")
    refused([str(footage[0]), "--model", str(tmp_path / "nobundle"), "--out", str(out)], "no such bundle")
    refused([str(footage[0]), "--model", bundle, "--out", str(out), "--backend", "tensorrt"],
            "backend tensorrt is unavailable")
    assert not out.exists() and not list(tmp_path.glob(".o.csv*"))


def test_incomplete_or_foreign_bundles_are_named(disfa_short_bundle, footage, tmp_path):
    out = tmp_path / "o.csv"
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    shutil.copy(disfa_short_bundle / "mdhr.json", incomplete / "mdhr.json")
    refused([str(footage[0]), "--model", str(incomplete), "--out", str(out)], "incomplete bundle")
    future = tmp_path / "future"
    future.mkdir()
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    (future / "mdhr.json").write_text(json.dumps({**card, "format": 99}))
    refused([str(footage[0]), "--model", str(future), "--out", str(out)], "bundle format 99 is not supported")
    assert not out.exists()


def test_runtime_does_not_import_torch():
    code = ("import sys, mdhr_runtime, mdhr_runtime.detector, mdhr_runtime.cli.run, mdhr_runtime.backends.runners, "
            "mdhr_runtime.sources.frames, mdhr_runtime.faces.detection, mdhr_runtime.crops.crop, mdhr_runtime.windows.clips, "
            "mdhr_runtime.results.table, mdhr_runtime.results.plot; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
