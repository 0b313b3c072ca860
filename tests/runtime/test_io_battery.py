"""The trust boundary of files: output paths, input images and containers,
and CSV cells for mdhr-report, each tested as a class of generated cases
(docs/errors.md, "Files the toolkit is given").

Output-path refusals happen before any model loads, so most cases run the
commands in-process with click's runner; a full disk is a small tmpfs this
test mounts (skipped where mounting is not allowed)."""
from __future__ import annotations

import csv
import io
import math
import os
import resource
import shutil
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdhr.errors import MDHRError
from tests.support.io_files import FACE, entries, fill, tmpfs, write_video


def one_line_error(result) -> str:
    # the test bundle is untrained, which mdhr-run says on a line of its own
    text = "\n".join(line for line in result.output.strip().splitlines() if "UNTRAINED model" not in line)
    assert result.exit_code == 2, text
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


# -- output paths ------------------------------------------------------------------

# (command, the option under test, arguments with {out} where the path goes)
FILE_OUTPUTS = [
    ("mdhr-run", "--out", ["{video}", "--model", "{model}", "--out", "{out}"]),
    ("mdhr-run", "--json", ["{video}", "--model", "{model}", "--out", "{dir}/ok.csv", "--json", "{out}"]),
    ("mdhr-run", "--plot", ["{video}", "--model", "{model}", "--out", "{dir}/ok.csv", "--plot", "{out}"]),
    ("mdhr-run", "--report", ["{video}", "--model", "{model}", "--out", "{dir}/ok.csv", "--report", "{out}"]),
    ("mdhr-report", "--html", ["{csv}", "--html", "{out}"]),
    ("mdhr-bench", "--json", ["--model", "{model}", "--backends", "onnxruntime", "--json", "{out}"]),
    ("mdhr-bench", "--markdown", ["--model", "{model}", "--backends", "onnxruntime", "--markdown", "{out}"]),
    ("mdhr-parity", "--json", ["--model", "{model}", "--json", "{out}"]),
]


def command(name: str):
    from mdhr_bench.cli import bench_main, parity_main
    from mdhr_runtime.cli.report import main as report_main
    from mdhr_runtime.cli.run import main as run_main

    return {"mdhr-run": run_main, "mdhr-report": report_main, "mdhr-bench": bench_main,
            "mdhr-parity": parity_main}[name]


def refused_path(kind: str, folder: Path) -> tuple[str, str]:
    """A path of class ``kind`` under ``folder`` and a phrase its refusal says."""
    if kind == "existing folder":
        (folder / "a folder").mkdir()
        return str(folder / "a folder"), "is a folder"
    if kind == "file as parent":
        (folder / "plain").write_text("x")
        return str(folder / "plain" / "out.csv"), "is not a folder"
    if kind == "symbolic link":
        (folder / "elsewhere.csv").write_text("keep")
        (folder / "link.csv").symlink_to(folder / "elsewhere.csv")
        return str(folder / "link.csv"), "symbolic link"
    if kind in ("256-byte name", "300-byte name"):
        size = int(kind.split("-")[0])
        return str(folder / ("n" * (size - 4) + ".csv")), "takes at most 255"
    if kind == "300-byte name in a missing folder":
        return str(folder / "new" / ("n" * 296 + ".csv")), "takes at most 255"
    if kind == "trailing slash":
        return str(folder / "newdir") + "/", "names a folder"
    if kind == "empty":
        return "", "is empty"
    raise AssertionError(kind)


REFUSED_KINDS = ["existing folder", "file as parent", "symbolic link", "256-byte name", "300-byte name",
                 "300-byte name in a missing folder", "trailing slash", "empty"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    """A CSV as mdhr-run writes it (DISFA's 8 AUs, a frame without a face)."""
    from mdhr_runtime.faces.quality import FaceQuality
    from mdhr_runtime.faces.tracking import FaceResult
    from mdhr_runtime.results.table import FrameRow, FrameTable

    table = FrameTable([f"AU{n:02d}" for n in (1, 2, 4, 6, 9, 12, 25, 26)], 0.5)
    rng = np.random.default_rng(0)
    for k in range(12):
        found = k != 5
        face = FaceResult(True, 0.99, (10.0, 12.0, 80.0, 80.0)) if found else FaceResult.missing()
        scores = rng.uniform(-1, 1, 8).astype(np.float32) if found else None
        landmarks = rng.uniform(20, 80, (5, 2)).astype(np.float32)
        quality = FaceQuality(landmarks, (0.1, -0.2, 0.05), 80.0, k % 3, ("yaw>35",) if k == 7 else ()) \
            if found else None
        table.rows.append(FrameRow(k, k / 30, face, scores, None, quality))
    path = tmp_path_factory.mktemp("csv") / "run.csv"
    table.write_csv(path)
    return path


@pytest.mark.parametrize("kind", REFUSED_KINDS)
@pytest.mark.parametrize("name,option,arguments", FILE_OUTPUTS, ids=[f"{c} {o}" for c, o, _ in FILE_OUTPUTS])
def test_refused_output_paths_are_one_line_and_leave_nothing(name, option, arguments, kind, tmp_path,
                                                             disfa_short_bundle, face_avi, small_csv):
    out, phrase = refused_path(kind, tmp_path)
    before = entries(tmp_path)
    args = [a.format(out=out, dir=tmp_path, video=face_avi, model=disfa_short_bundle, csv=small_csv)
            for a in arguments]
    result = CliRunner().invoke(command(name), args)
    line = one_line_error(result)
    assert phrase in line and option in line, line
    assert entries(tmp_path) == before
    if kind == "symbolic link":
        assert (tmp_path / "elsewhere.csv").read_text() == "keep"


@pytest.mark.parametrize("kind", ["256-byte name", "trailing slash", "empty", "file as parent"])
def test_folder_outputs_refuse_what_is_no_folder_name(kind, tmp_path, disfa_short_bundle):
    """mdhr-export and mdhr-batch write folders: a name too long, empty or
    under a file is refused before any work."""
    from mdhr_export.cli import main as export_main
    from mdhr_runtime.cli.batch import main as batch_main

    out, _ = refused_path(kind, tmp_path)
    if kind == "trailing slash":  # a folder output may end in /: nothing to refuse
        return
    before = entries(tmp_path)
    for main, args in ((export_main, ["--random-init", "--dataset", "DISFA", "--out", out]),
                       (batch_main, [str(tmp_path), "--model", str(disfa_short_bundle), "--out", out])):
        result = CliRunner().invoke(main, args)
        one_line_error(result)
        assert entries(tmp_path) == before


def test_empty_text_is_no_path_for_any_command(tmp_path, disfa_short_bundle, face_avi):
    from mdhr_bench.cli import bench_main, parity_main
    from mdhr_export.cli import build_main, triton_main
    from mdhr_export.cli import main as export_main
    from mdhr_runtime.cli.batch import main as batch_main
    from mdhr_runtime.cli.report import main as report_main
    from mdhr_runtime.cli.run import main as run_main

    model, video, out = str(disfa_short_bundle), str(face_avi), str(tmp_path / "o.csv")
    cases = [(run_main, ["", "--model", model, "--out", out]), (run_main, [video, "--model", "", "--out", out]),
             (batch_main, ["", "--model", model, "--out", str(tmp_path / "b")]),
             (batch_main, [video, "--model", "", "--out", str(tmp_path / "b")]),
             (report_main, ["", "--html", str(tmp_path / "r.html")]),
             (report_main, [out, "--html", str(tmp_path / "r.html"), "--video", ""]),
             (export_main, ["--ckpt", "", "--out", str(tmp_path / "e")]),
             (build_main, [""]), (triton_main, [model, ""]), (triton_main, ["", str(tmp_path / "t")]),
             (bench_main, ["--model", ""]), (bench_main, ["--model", model, "--video", ""]),
             (parity_main, ["--model", "", "--json", str(tmp_path / "p.json")])]
    for main, args in cases:
        line = one_line_error(CliRunner().invoke(main, args))
        assert "is empty" in line, (args, line)
    assert entries(tmp_path) == set()


def test_names_the_file_system_takes_are_written_and_missing_folders_made(tmp_path, disfa_short_bundle,
                                                                           face_avi):
    """The longest CSV name whose run facts (NAME.run.json, 5 bytes longer)
    still fit a 255-byte name (the staging name cannot carry its decorations,
    so a digest stands in), a name that is not UTF-8, and folders that do not
    exist yet: the run writes them all."""
    from mdhr_runtime.cli.run import main as run_main

    longest = tmp_path / "new" / "deeper" / ("l" * 246 + ".csv")
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/r\xe9sum\xe9 #1?%22<script>.html"))
    result = CliRunner().invoke(run_main, [str(face_avi), "--model", str(disfa_short_bundle), "--out",
                                           str(longest), "--report", str(odd)])
    assert result.exit_code == 0, result.output
    assert longest.is_file() and len(longest.read_text().splitlines()) == 25
    page = odd.read_bytes()
    assert b"<script>.html" not in page.split(b"<h1>")[1][:400]  # the name is escaped in the page
    assert not [p for p in tmp_path.rglob("*.part")]


def test_a_full_disk_is_found_before_the_work(tmp_path, disfa_short_bundle, face_avi):
    from mdhr_runtime.cli.run import main as run_main

    with tmpfs(tmp_path / "disk", "64k") as disk:
        fill(disk, 0)
        before = entries(disk)
        started = time.perf_counter()
        result = CliRunner().invoke(run_main, [str(face_avi), "--model", str(disfa_short_bundle),
                                               "--out", str(disk / "out.csv")])
        line = one_line_error(result)
        assert "free" in line and "--out" in line, line
        assert time.perf_counter() - started < 10  # no model ran
        assert entries(disk) == before


def test_a_disk_filling_during_the_write_is_one_line_and_leaves_nothing(tmp_path, disfa_short_bundle, face_avi):
    """The estimate passes (a CSV fits) but the report does not: exit 2,
    no CSV, no report, no staging, no folder made for them."""
    from mdhr_runtime.cli.run import main as run_main

    with tmpfs(tmp_path / "disk", "512k") as disk:
        fill(disk, 72 * 1024)  # the estimate for 24 frames is 66 KiB
        before = entries(disk)
        result = CliRunner().invoke(run_main, [str(face_avi), "--model", str(disfa_short_bundle),
                                               "--out", str(disk / "new" / "out.csv"),
                                               "--json", str(disk / "new" / "out.json"),
                                               "--plot", str(disk / "new" / "out.png"),
                                               "--report", str(disk / "new" / "out.html")])
        line = one_line_error(result)
        assert "no space left" in line, line
        assert entries(disk) == before


def test_a_read_only_file_system_is_named_before_the_work(tmp_path, disfa_short_bundle, face_avi):
    from mdhr_runtime.cli.run import main as run_main

    with tmpfs(tmp_path / "ro", "64k", read_only=True) as disk:
        result = CliRunner().invoke(run_main, [str(face_avi), "--model", str(disfa_short_bundle),
                                               "--out", str(disk / "out.csv")])
        assert "read-only" in one_line_error(result)


def test_staging_names_fit_the_file_system(tmp_path):
    from mdhr_runtime.files.atomic import write_atomically

    for size in (1, 200, 230, 240, 255):
        target = tmp_path / ("s" * size)
        write_atomically(target, b"x")
        assert target.read_bytes() == b"x"
    assert {len(p.name) for p in tmp_path.iterdir()} == {1, 200, 230, 240, 255}


# -- input images and containers -----------------------------------------------------


def stored_for(orientation: int, upright):
    """The stored pixels a camera writes with EXIF ``orientation`` for a
    picture that is ``upright`` (Pillow's exif_transpose is the oracle)."""
    from PIL import Image, ImageOps

    for turn in (None, *Image.Transpose):
        stored = upright if turn is None else upright.transpose(turn)
        exif = stored.getexif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        stored.save(buffer, format="PNG", exif=exif.tobytes())
        if np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(buffer)).convert("RGB")),
                          np.asarray(upright)):
            return stored, exif
    raise AssertionError(orientation)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_images_are_read_upright_for_every_exif_orientation(orientation, suffix, tmp_path):
    from PIL import Image

    from mdhr_runtime.sources.frames import FrameSource

    upright = Image.open(FACE).convert("RGB").resize((240, 180))  # not square: a turn changes the shape
    stored, exif = stored_for(orientation, upright)
    path = tmp_path / f"photo{suffix}"
    stored.save(path, exif=exif.tobytes(), **({"quality": 95} if suffix == ".jpg" else {}))
    frames = list(FrameSource(path))
    assert len(frames) == 1 and frames[0].rgb.shape == (180, 240, 3)
    if suffix == ".png":
        assert np.array_equal(frames[0].rgb, np.asarray(upright))
    else:  # OpenCV's IMREAD_COLOR applies the orientation itself: the same decoder's pixels
        assert np.array_equal(frames[0].rgb, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    assert np.array_equal(next(iter(FrameSource(folder))).rgb, frames[0].rgb)


def test_a_phone_photo_on_its_side_is_scored_upright(tmp_path, detector):
    """A portrait stored sideways with orientation 6: the face is found and
    its box is the one of the upright photo."""
    from PIL import Image

    upright = Image.open(FACE).convert("RGB")
    stored, exif = stored_for(6, upright)
    phone = tmp_path / "IMG_0001.jpg"
    stored.save(phone, exif=exif.tobytes(), quality=95)
    straight = tmp_path / "straight.png"
    upright.save(straight)
    sideways, expected = detector.predict_video(phone), detector.predict_video(straight)
    assert sideways.rows[0].face.success
    from mdhr_runtime.faces.detection import box_iou

    assert box_iou(sideways.rows[0].face.box, expected.rows[0].face.box) > 0.9


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_every_frame_of_an_animated_image_is_scored_at_its_time(fmt, tmp_path, detector):
    from PIL import Image

    from mdhr_runtime.sources.frames import FrameSource

    photo = Image.open(FACE).convert("RGB").resize((200, 200))
    frames = [photo.rotate(angle) for angle in (0, 4, 8, 12, 16)]
    durations = [100, 200, 40, 300, 100]
    path = tmp_path / f"moving.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    source = FrameSource(path)
    assert source.kind == "animation" and source.frame_count == 5
    starts = np.cumsum([0] + durations[:-1]) / 1000
    assert np.allclose([f.timestamp for f in source], starts)
    table = detector.predict_video(path)
    assert len(table) == 5 and np.allclose([r.timestamp for r in table.rows], starts, atol=1e-3)
    assert all(r.face.success for r in table.rows)


def bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def bomb_gif(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"," + struct.pack("<HHHH", 0, 0, width,
            height) + b"\x00\x02\x02\x44\x01\x00;")


def bomb_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("make,suffix", [(bomb_png, ".png"), (bomb_gif, ".gif"), (bomb_jpeg, ".jpg")])
@pytest.mark.parametrize("size", [(20000, 20000), (65535, 65535), (100000, 3)])
def test_images_declaring_huge_sizes_are_refused_without_allocating(make, suffix, size, tmp_path):
    from mdhr_runtime.sources.frames import FrameSource

    if suffix != ".png" and max(size) > 65535:
        size = (65535, 65535 if size[1] > 3 else 3)
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(make(*size))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(MDHRError) as refused:
        list(FrameSource(path))
    if size[0] * size[1] > (1 << 27):
        assert "declares" in str(refused.value)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown < 200 * 1024  # KiB


@pytest.mark.parametrize("case", ["zero bytes", "truncated png", "truncated jpeg", "text as png", "png as mp4",
                                  "mp4 as jpg", "gif with one frame"])
def test_damaged_and_misnamed_inputs_are_read_or_refused_in_one_line(case, tmp_path):
    from PIL import Image

    from mdhr_runtime.sources.frames import FrameSource

    photo = Image.open(FACE).convert("RGB")
    buffer = io.BytesIO()
    if case == "zero bytes":
        path, data, readable = tmp_path / "empty.jpg", b"", False
    elif case.startswith("truncated"):
        photo.save(buffer, format="PNG" if "png" in case else "JPEG")
        suffix = ".png" if "png" in case else ".jpg"
        path, data, readable = tmp_path / f"cut{suffix}", buffer.getvalue()[:len(buffer.getvalue()) // 2], None
    elif case == "text as png":
        path, data, readable = tmp_path / "notes.png", b"<html>not an image</html>", False
    elif case == "png as mp4":
        photo.save(buffer, format="PNG")
        path, data, readable = tmp_path / "still.mp4", buffer.getvalue(), True
    elif case == "mp4 as jpg":
        write_video(tmp_path / "v.mp4", frames=5)
        path, data, readable = tmp_path / "clip.jpg", (tmp_path / "v.mp4").read_bytes(), True
    else:
        photo.save(buffer, format="GIF")
        path, data, readable = tmp_path / "one.gif", buffer.getvalue(), True
    path.write_bytes(data)
    try:
        frames = list(FrameSource(path))
    except MDHRError as error:
        assert readable is not True, error
        assert "\n" not in str(error)
        return
    assert readable is not False and frames and frames[0].rgb.ndim == 3


@pytest.mark.parametrize("rate", [240, 1000, 2000, 10000])
@pytest.mark.parametrize("fmt", ["mp4", "matroska"])
def test_high_frame_rates_come_from_the_containers_timing(rate, fmt, tmp_path, caplog):
    from mdhr_runtime.sources.frames import FrameSource

    path = write_video(tmp_path / f"fast.{'mkv' if fmt == 'matroska' else 'mp4'}", frames=20, size=(160, 120),
                       rate=rate, fmt=fmt)
    with caplog.at_level("WARNING"):
        source = FrameSource(path)
        frames = list(source)
    assert "no usable frame rate" not in caplog.text
    assert source.fps == pytest.approx(rate, rel=0.01) and len(frames) == 20 and not source.truncated


def test_report_video_and_timeline_agree_on_a_variable_rate_file(tmp_path, detector):
    """The annotated video shows frame k at the time the timeline (and the
    CSV) give frame k, on a real variable-rate MP4."""
    from mdhr_runtime.results.report import report_html
    from mdhr_runtime.sources.frames import FrameSource

    times = np.cumsum([0.0] + [0.02 if k % 3 else 0.15 for k in range(17)])
    video = write_video(tmp_path / "vfr.mp4", frames=18, times=times)
    table = detector.predict_video(video)
    assert np.allclose([r.timestamp for r in table.rows], times, atol=1e-3)
    overlay = tmp_path / "overlay.mp4"
    from mdhr_runtime.results.overlay import write_overlay

    write_overlay(table, video, overlay)
    shown = [f.timestamp for f in FrameSource(overlay)]
    assert np.allclose(shown, times, atol=1e-3)
    page, _, _ = report_html(table, tmp_path / "r.html", {}, video)
    assert '"times":[' + ",".join(f"{round(float(t), 4):g}" for t in times[:3]) in page.replace(".0,", ",")


def test_the_report_of_an_incomplete_run_says_so(tmp_path, detector, face_avi):
    from mdhr_runtime.results.report import report_html

    video = face_avi
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    table = detector.predict_video(cut)
    assert not table.complete
    page, _, _ = report_html(table, tmp_path / "r.html", {}, None)
    assert 'id="incomplete"' in page and "INCOMPLETE RUN" in page and "NO: incomplete run" in page
    whole = detector.predict_video(video)
    assert "INCOMPLETE" not in report_html(whole, tmp_path / "w.html", {}, None)[0]


LINK_NAMES = ["a b.mp4", "take#2.mp4", "why?.mp4", "100%.mp4", "say \"hi\".mp4", "it's.mp4", "été – 北京.mp4",
              "<script>alert(1)</script>.mp4", "a&b=c.mp4"]


@pytest.mark.parametrize("name", LINK_NAMES)
def test_links_built_from_file_names_are_percent_encoded(name):
    from urllib.parse import unquote, urlsplit

    from mdhr_runtime.results.report import _video_section, href

    link = href(f"folder/{name}")
    assert unquote(link) == f"folder/{name}"
    parts = urlsplit(link)
    assert parts.path == link and not parts.query and not parts.fragment and not parts.scheme
    section = _video_section(None, f"folder/{name}")
    assert f'src="{link}"' in section and "<script>alert" not in section


def test_a_closed_detector_says_so(disfa_short_bundle, face_avi):
    from mdhr_runtime.detector import AUDetector

    with AUDetector(disfa_short_bundle, backend="onnxruntime") as detector:
        detector.predict_clips(np.zeros((1, 4, 3, 224, 224), np.float32))
    for use in (lambda: detector.predict_clips(np.zeros((1, 4, 3, 224, 224), np.float32)),
                lambda: detector.predict_video(face_avi), lambda: detector.stream()):
        with pytest.raises(MDHRError, match="closed"):
            use()
    detector.close()  # twice: harmless


# -- CSV cells for mdhr-report ---------------------------------------------------------

CORRUPTIONS = ["nan", "inf", "-inf", "empty", "text", "huge", "negative frame", "duplicate row", "missing column"]
# where an empty cell is what mdhr-run itself writes (a score a window did not reach, an unknown confidence)
EMPTY_ALLOWED = ("_score", "_c", "confidence", "_x", "_y", "pose_Rx", "pose_Ry", "pose_Rz", "frames_since_detection",
                 "flags")
FREE_TEXT = ("flags",)  # the reasons a face is flagged: words, not numbers


def corrupt(lines: list[list[str]], how: str, row: int, column: int) -> tuple[list[list[str]], bool]:
    """The CSV's cells with one corruption; whether reading must refuse it."""
    header, rows = lines[0], [list(r) for r in lines[1:]]
    name = header[column]
    if how == "duplicate row":
        return [header] + rows[:row + 1] + [rows[row]] + rows[row + 1:], True
    if how == "missing column":
        return [[c for k, c in enumerate(r) if k != column] for r in [header] + rows], name != "face_id"
    if how == "negative frame":
        rows[row][0] = "-3"
        return [header] + rows, True
    text = {"nan": "nan", "inf": "inf", "-inf": "-inf", "empty": "", "text": "abc", "huge": "1e300"}[how]
    was = rows[row][column]
    rows[row][column] = text
    if how == "empty":
        must = bool(was) and not name.endswith(EMPTY_ALLOWED)
    elif how in ("text", "huge") and name in FREE_TEXT:
        must = not was  # words where none were: flags without flagged 1
    else:
        must = True
    return [header] + rows, must


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(CORRUPTIONS), row=st.integers(0, 11), column=st.integers(0, 40))
def test_csv_cells_are_finite_numbers_or_refused_in_one_line(small_csv, tmp_path, how, row, column):
    from mdhr_runtime.results.readback import read_csv

    lines = list(csv.reader(small_csv.open()))
    changed, must_refuse = corrupt(lines, how, row, column % len(lines[0]))
    path = tmp_path / "changed.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(changed)
    try:
        table = read_csv(path)
    except MDHRError as error:
        assert "\n" not in str(error)
        return
    assert not must_refuse, (how, row, lines[0][column % len(lines[0])])
    for r in table.rows:
        assert math.isfinite(r.timestamp) and r.index >= 0
        if r.scores is not None:
            assert np.all(np.isnan(r.scores) | (np.abs(r.scores) <= 1))


def test_mdhr_report_names_a_non_finite_cell(small_csv, tmp_path):
    from mdhr_runtime.cli.report import main as report_main

    lines = list(csv.reader(small_csv.open()))
    lines[3][lines[0].index("AU06_score")] = "nan"
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(lines)
    line = one_line_error(CliRunner().invoke(report_main, [str(bad), "--html", str(tmp_path / "r.html")]))
    assert "line 4" in line and "AU06_score" in line and "finite" in line
    assert not (tmp_path / "r.html").exists()
