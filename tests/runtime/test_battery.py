"""Inputs real users bring that the other tests do not: odd images in frame
folders, odd videos, damaged bundles, standard streams, racing runs, batch
list files, signals, and memory over a long run.  Each case works, or ends
with one clear line and the exit code docs/errors.md gives for it."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mdhr_runtime.cli.run import main as run_main
from mdhr_runtime.sources.frames import FrameSource
from tests.support.refusals import error_line, staging_in, user_lines
from tests.support.synthetic import FootageMaker, Segment
from tests.support.videos import audio_only, cut, damaged, h264, moving_bar, with_edit_list

RUN = "from mdhr_runtime.cli.run import main; main()"
BATCH = "from mdhr_runtime.cli.batch import main; main()"


def face_frames(photo, n: int, size=(160, 120), kind="clean") -> list[np.ndarray]:
    return [f.rgb for f in FootageMaker(photo, size=size).frames([Segment(kind, n, speed=0.5)])]


def mdhr_run(*args, expect: int):
    result = CliRunner().invoke(run_main, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def one_line(result, *expected: str) -> str:
    assert "Traceback" not in result.output
    return error_line(result.stderr, *expected, alone=True)


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- frame folders ---------------------------------------------------------------


def _grey(path):
    cv2.imwrite(str(path), np.full((60, 80), 120, np.uint8))
    return [120, 120, 120]


def _rgba(path):
    Image.fromarray(np.full((60, 80, 4), (200, 100, 50, 90), np.uint8)).save(path)
    return [200, 100, 50]


def _sixteen_bit(path):
    cv2.imwrite(str(path), np.full((60, 80, 3), (10000, 30000, 50000), np.uint16))  # BGR
    return [194, 117, 39]


def _cmyk(path):
    Image.fromarray(np.full((60, 80, 3), (200, 100, 50), np.uint8)).convert("CMYK").save(path, quality=95)
    return [200, 100, 50]


KINDS = {"grey.png": _grey, "rgba.png": _rgba, "deep.png": _sixteen_bit, "cmyk.jpg": _cmyk}


@pytest.mark.parametrize("name", list(KINDS))
def test_grey_rgba_16_bit_and_cmyk_images_come_out_rgb(tmp_path, name):
    colour = KINDS[name](tmp_path / name)
    (frame,) = list(FrameSource(tmp_path / name))
    assert frame.rgb.shape == (60, 80, 3) and frame.rgb.dtype == np.uint8
    assert np.abs(frame.rgb[30, 40].astype(int) - colour).max() <= 3, frame.rgb[30, 40]


def test_a_mixed_folder_with_other_files_runs(disfa_short_bundle, photo, tmp_path):
    """Frames of every kind above with a face in them, beside notes, a
    .DS_Store and the ._ twins macOS leaves on other disks."""
    folder = tmp_path / "frames"
    folder.mkdir()
    face = face_frames(photo, 1)[0]
    cv2.imwrite(str(folder / "f1.png"), cv2.cvtColor(face, cv2.COLOR_RGB2GRAY))
    Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])).save(folder / "f2.png")
    cv2.imwrite(str(folder / "f3.png"), face[..., ::-1].astype(np.uint16) * 257)
    Image.fromarray(face).convert("CMYK").save(folder / "f4.jpg", quality=95)
    (folder / "notes.txt").write_text("session 3")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._f1.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    out = tmp_path / "out.csv"
    mdhr_run(folder, "--model", disfa_short_bundle, "--out", out, expect=0)
    rows = csv_rows(out)
    assert [r["frame"] for r in rows] == ["1", "2", "3", "4"] and all(r["success"] == "1" for r in rows)


@pytest.mark.parametrize("content,message", [(b"", "is empty (0 bytes)"), (b"<html>404</html>", "is not an image")])
def test_an_empty_or_foreign_file_in_a_folder_is_named_before_work(disfa_short_bundle, tmp_path, content, message):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "f1.png"), np.zeros((40, 40, 3), np.uint8))
    (folder / "f2.jpg").write_bytes(content)
    # a bundle whose model cannot load: had the model loaded first, its error would be the one named
    bundle = bundle_copy(disfa_short_bundle, tmp_path)
    replace(bundle / "model.onnx", b"not a model")
    result = mdhr_run(folder, "--model", bundle, "--out", tmp_path / "o.csv", expect=2)
    one_line(result, str(folder / "f2.jpg"), message, "remove it")
    assert not (tmp_path / "o.csv").exists()


# -- videos ----------------------------------------------------------------------


def test_a_one_frame_video(disfa_short_bundle, photo, tmp_path):
    video = h264(tmp_path / "still.mp4", face_frames(photo, 1))
    mdhr_run(video, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", expect=0)
    (row,) = csv_rows(tmp_path / "o.csv")
    assert row["success"] == "1" and row["timestamp"] == "0.000"


def test_a_video_whose_first_seconds_are_black(disfa_short_bundle, photo, tmp_path):
    black = [np.zeros((120, 160, 3), np.uint8)] * 6
    video = h264(tmp_path / "late.mp4", black + face_frames(photo, 4),
                 times_ms=[0, 500, 1000, 1500, 2000, 2500, 3000, 3033, 3067, 3100])
    result = mdhr_run(video, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", expect=0)
    assert [r["success"] for r in csv_rows(tmp_path / "o.csv")] == ["0"] * 6 + ["1"] * 4
    assert user_lines(result.stderr) == [f"wrote {tmp_path / 'o.csv'}: 10 frames, face found in 4"]


def test_a_phone_mp4_with_an_edit_list_exits_0(disfa_short_bundle, photo, tmp_path):
    """A phone's file: B-frames, and an edit list hiding three priming
    samples; a check of the samples stored against the frames shown would
    exit 4 on it."""
    plain = h264(tmp_path / "plain.mp4", face_frames(photo, 11))
    video = with_edit_list(plain, tmp_path / "phone.mp4", hidden=3)
    js = tmp_path / "o.json"
    mdhr_run(video, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", "--json", js, expect=0)
    document = json.loads(js.read_text())
    assert document["complete"] is True and document["frames_read"] == 8 and document["frames_declared"] == 11


@pytest.mark.parametrize("harm", ["cut at 40%", "noise over the middle"])
def test_a_cut_or_damaged_video_exits_4_with_its_rows(disfa_short_bundle, tmp_path, harm):
    whole = h264(tmp_path / "whole.mp4", moving_bar(60), faststart=True)
    video = (cut(whole, tmp_path / "v.mp4", 0.4) if harm.startswith("cut")
             else damaged(whole, tmp_path / "v.mp4", at=0.5, length=4000))
    out = tmp_path / "o.csv"
    result = mdhr_run(video, "--model", disfa_short_bundle, "--out", out, expect=4)
    rows = csv_rows(out)
    line = one_line(result, f"{video} was not read to its end: ", "the file is truncated or damaged",
                    f"the {len(rows)} frames read were written to {out}")
    assert ("decoding stopped at" if harm.startswith("cut") else "decoding failed at") in line
    assert 0 < len(rows) < 60


@pytest.mark.parametrize("kind", ["mp4 cut before its index", "audio only"])
def test_videos_that_cannot_be_read_at_all_exit_2(disfa_short_bundle, tmp_path, kind):
    if kind == "audio only":
        video, message = audio_only(tmp_path / "memo.mp4"), "holds no video stream"
    else:
        video = cut(h264(tmp_path / "whole.mp4", moving_bar(30)), tmp_path / "v.mp4", 0.9)
        message = "cut short before its index was written"
    result = mdhr_run(video, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", expect=2)
    one_line(result, str(video), message)


def test_a_4k_video(disfa_short_bundle, photo, tmp_path):
    """Two 3840x2160 frames (timing and memory: scripts/errors_long_run.py)."""
    video = h264(tmp_path / "uhd.mp4", face_frames(photo, 2, size=(3840, 2160)))
    mdhr_run(video, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", expect=0)
    assert [r["success"] for r in csv_rows(tmp_path / "o.csv")] == ["1", "1"]


def test_paths_with_spaces_and_non_ascii_letters(disfa_short_bundle, photo, tmp_path):
    folder = tmp_path / "Entretiens été" / "Sitzung 3 – Müller"
    folder.mkdir(parents=True)
    video = h264(folder / "caméra 1 (kopie).mp4", face_frames(photo, 4))
    out = tmp_path / "résultats ü" / "sortie 1.csv"
    js = tmp_path / "résultats ü" / "sortie 1.json"
    mdhr_run(video, "--model", disfa_short_bundle, "--out", out, "--json", js, expect=0)
    assert len(csv_rows(out)) == 4 and json.loads(js.read_text(encoding="utf-8"))["metadata"]["input"] == str(video)


# -- bundles ---------------------------------------------------------------------


def bundle_copy(bundle: Path, folder: Path) -> Path:
    """The bundle with every file hard-linked (cheap); a test replaces, never
    edits, a file in it."""
    copy = folder / "bundle"
    shutil.copytree(bundle, copy, copy_function=os.link)
    return copy


@pytest.fixture
def face_mp4(photo, tmp_path):
    return h264(tmp_path / "face.mp4", face_frames(photo, 4))


def replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


# Centred windows (the default) open the stage graphs only; the whole-model
# graph is opened, and so checked, by the official windows that run it.
@pytest.mark.parametrize("harm,message,windows", [
    ("model.onnx truncated", "the card says", "official"),
    ("frame stage truncated", "the card says", "centred"),
    ("weights file truncated", "the card says", "centred"),
    ("model.onnx swapped", "the card says", "official"),
    ("stages swapped", "the card says", "centred"),
    ("card edited: 8 frames", "is not the model its card describes", "official"),
    ("card edited: 8 frames", "not the 8 its card describes", "centred"),
    ("frame stage missing", "is missing from the bundle", "centred"),
])
def test_a_damaged_bundle_is_named_in_one_line(disfa_short_bundle, face_mp4, tmp_path, harm, message, windows):
    bundle = bundle_copy(disfa_short_bundle, tmp_path)
    card = json.loads((bundle / "mdhr.json").read_text())
    names = card["artifacts"]
    frame_stage, clip_stage = bundle / names["frame_stage"], bundle / names["clip_stage"]
    def cut(path: Path) -> None:  # the first half: a copy cut short
        replace(path, path.read_bytes()[:path.stat().st_size // 2])

    if harm == "model.onnx truncated":
        cut(bundle / names["onnx"])
    elif harm == "frame stage truncated":
        cut(frame_stage)
    elif harm == "weights file truncated":
        cut(bundle / names["weights"])
    elif harm == "model.onnx swapped":
        replace(bundle / names["onnx"], clip_stage.read_bytes())
    elif harm == "stages swapped":
        frame_bytes = frame_stage.read_bytes()
        replace(frame_stage, clip_stage.read_bytes())
        replace(clip_stage, frame_bytes)
    elif harm == "card edited: 8 frames":
        card["input"]["shape"][1] = 8
        replace(bundle / "mdhr.json", json.dumps(card).encode())
    else:
        frame_stage.unlink()
    result = mdhr_run(face_mp4, "--model", bundle, "--out", tmp_path / "o.csv", "--windows", windows, expect=2)
    one_line(result, message)
    assert not (tmp_path / "o.csv").exists()


# -- standard streams --------------------------------------------------------------


def test_out_dash_writes_the_csv_to_stdout_and_every_message_to_stderr(disfa_short_bundle, face_mp4, tmp_path):
    """A real process, so progress bars and FFmpeg would be seen on the real
    descriptors; stdout must parse as the CSV and nothing else."""
    result = subprocess.run([sys.executable, "-c", RUN, str(face_mp4), "--model", str(disfa_short_bundle),
                             "--out", "-"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["frame"] for r in rows] == ["1", "2", "3", "4"]
    assert user_lines(result.stderr) == ["wrote standard output: 4 frames, face found in 4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.mp4"]  # no file named -


def test_json_dash_with_a_csv_file(disfa_short_bundle, face_mp4, tmp_path):
    result = mdhr_run(face_mp4, "--model", disfa_short_bundle, "--out", tmp_path / "o.csv", "--json", "-", expect=0)
    assert json.loads(result.stdout)["frames_read"] == 4 and len(csv_rows(tmp_path / "o.csv")) == 4


@pytest.mark.parametrize("args,message", [
    (["v.mp4", "--out", "-", "--json", "-"], "--out and --json cannot both be standard output (-)"),
    (["-", "--out", "o.csv"], "INPUT - (a video on standard input) is not supported"),
    (["v.mp4", "--out", "o.csv", "--plot", "-"], "--plot - : a PNG is not written to standard output"),
])
def test_dash_refusals(disfa_short_bundle, face_mp4, tmp_path, args, message):
    args = [str(face_mp4) if a == "v.mp4" else str(tmp_path / a) if a == "o.csv" else a for a in args]
    result = mdhr_run(*args, "--model", disfa_short_bundle, expect=2)
    one_line(result, message)
    assert list(tmp_path.iterdir()) == [face_mp4]


@pytest.mark.parametrize("args,message", [
    (["--out", "-"], "--out - : mdhr-batch writes a folder"),
    (["-", "--out", "out"], "INPUT - (standard input) is not supported"),
])
def test_batch_dash_refusals(disfa_short_bundle, face_mp4, tmp_path, args, message):
    from mdhr_runtime.cli.batch import main as batch_main

    args = [str(tmp_path / a) if a == "out" else a for a in args]
    if args[0] == "--out":
        args = [str(face_mp4)] + args
    result = CliRunner().invoke(batch_main, [*args, "--model", str(disfa_short_bundle)])
    assert result.exit_code == 2, result.output
    one_line(result, message)


def test_two_runs_writing_the_same_out_at_once(disfa_short_bundle, face_mp4, tmp_path):
    """Both succeed; the file is one whole CSV (each run renames its own
    complete staging over it), and no staging is left."""
    out = tmp_path / "same.csv"
    command = [sys.executable, "-c", RUN, str(face_mp4), "--model", str(disfa_short_bundle), "--out", str(out)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    assert [r["frame"] for r in csv_rows(out)] == ["1", "2", "3", "4"]
    assert staging_in(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["face.mp4", "same.csv",
                                                                                          "same.run.json"]


# -- mdhr-batch lists --------------------------------------------------------------


def test_a_batch_list_with_blanks_comments_folders_and_repeats(disfa_short_bundle, photo, tmp_path):
    """Only a really cut video is partial: the phone MP4 with an edit list
    and a variable-rate Matroska file are ok."""
    videos = tmp_path / "videos"
    (videos / "day 2").mkdir(parents=True)
    plain = h264(tmp_path / "plain.mp4", face_frames(photo, 7))
    with_edit_list(plain, videos / "phone.mp4", hidden=3)
    h264(videos / "day 2" / "vfr.mkv", face_frames(photo, 5), times_ms=[0, 33, 100, 133, 233])
    cut(h264(tmp_path / "long.mp4", face_frames(photo, 40), faststart=True), videos / "cut.mp4", 0.5)
    listing = tmp_path / "list.txt"
    listing.write_text("# session 1\n\nvideos/phone.mp4\n   \nvideos/day 2\n# repeats\nvideos/phone.mp4\n"
                       f"{videos / 'day 2' / 'vfr.mkv'}\nvideos/cut.mp4\n", encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", BATCH, f"@{listing}", "--model", str(disfa_short_bundle),
                             "--out", str(out), "--workers", "1", "--json", "-"], capture_output=True, text=True,
                            timeout=400, env={**os.environ, "RAY_ADDRESS": ""})
    assert result.returncode == 5, result.stderr[-2000:]
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)["rows"]}
    assert sorted(rows) == ["cut.mp4", "phone.mp4", "vfr.mkv"]
    assert rows["phone.mp4"]["status"] == rows["vfr.mkv"]["status"] == "ok"
    assert rows["phone.mp4"]["frames"] == 4 and rows["vfr.mkv"]["frames"] == 5
    assert rows["cut.mp4"]["status"] == "partial" and "decoding stopped at" in rows["cut.mp4"]["error"]


# -- signals -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_face_video(photo, tmp_path_factory):
    """Long enough (4000 frames) that a run is still going when signalled, at
    the pipeline's speed on the tiny bundle on an idle machine."""
    return h264(tmp_path_factory.mktemp("long") / "long.mp4", face_frames(photo, 4000))


def started(command: list[str], marker: Path | None = None, wait_s: float = 8.0) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_ADDRESS": ""})
    deadline = time.monotonic() + 240
    while marker is not None and not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(wait_s)
    assert process.poll() is None, process.communicate()[1][-1000:]
    return process


@pytest.mark.parametrize("name,number,code", [("SIGINT", signal.SIGINT, 130), ("SIGTERM", signal.SIGTERM, 143)])
def test_mdhr_run_stops_cleanly_on_a_signal(disfa_model_bundle, long_face_video, tmp_path, name, number, code):
    out = tmp_path / "o.csv"
    process = started([sys.executable, "-c", RUN, str(long_face_video), "--model", str(disfa_model_bundle),
                       "--out", str(out), "--json", str(tmp_path / "o.json")])
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    word = "interrupted" if number == signal.SIGINT else "terminated"
    assert user_lines(stderr) == [f"{word}; nothing was written"], stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,number,code", [("SIGINT", signal.SIGINT, 130), ("SIGTERM", signal.SIGTERM, 143)])
def test_mdhr_batch_stops_cleanly_on_a_signal(disfa_model_bundle, long_face_video, tmp_path, name, number, code):
    out = tmp_path / "out"
    process = started([sys.executable, "-c", BATCH, str(long_face_video), "--model", str(disfa_model_bundle),
                       "--out", str(out), "--workers", "1"], wait_s=10.0)  # Ray up, the video being scored
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-1500:]
    word = "interrupted" if number == signal.SIGINT else "terminated"
    assert f"{word}: the videos finished so far are in {out / 'summary.csv'}" in stderr
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    assert leftovers == [] and not (out / "long.csv").exists()


# -- memory ------------------------------------------------------------------------


def test_resident_memory_stays_flat_over_a_run(detector, photo, tmp_path):
    """Resident memory after the first 20 frames, at the middle and at the
    end of a 120-frame run (3,000 frames: scripts/errors_long_run.py)."""
    import psutil

    video = h264(tmp_path / "long.mp4", face_frames(photo, 120))
    process, samples = psutil.Process(), {}

    def sample(done: int) -> None:
        for at in (20, 70, 120):
            if done >= at and at not in samples:
                samples[at] = process.memory_info().rss / 2**20

    detector.predict_video(video, progress=sample)
    assert sorted(samples) == [20, 70, 120]
    assert samples[120] - samples[70] < 25, samples  # MiB: no growth with length
