"""The annotated video (decoded and checked against the CSV) and the HTML
reports, opened from disk in a real headless Chromium: nothing fetched, no
console errors, one timeline row per AU and column per frame, clicks seek
the video to the frame, playing moves the cursor."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mdhr_runtime.cli.common import EXIT_USER_ERROR
from mdhr_runtime.cli.report import main as report_main
from mdhr_runtime.cli.run import main as run_main
from mdhr_runtime.results.overlay import MISSING, face_colour
from tests.support.browser import chromium, have_chromium, open_report
from tests.support.synthetic import FootageMaker, Segment, write_video

FPS = 30.0
CLOCK = (slice(330, 360), slice(0, 220))  # the frame number and time, bottom left at 640x360


def invoke(main, args, expect=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def decoded(path: Path) -> tuple[list[np.ndarray], object]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate


@pytest.fixture(scope="module")
def video(tmp_path_factory, photo):
    """36 frames at 640x360: a face, 6 frames without one, the face again."""
    path = tmp_path_factory.mktemp("report") / "talk.mp4"
    maker = FootageMaker(photo, size=(640, 360))
    write_video(path, [f.rgb for f in maker.frames(
        (Segment("clean", 20, speed=0.5), Segment("empty", 6), Segment("clean", 10, speed=0.5)))], fps=FPS)
    return path


@pytest.fixture(scope="module")
def run(video, disfa_short_bundle):
    """mdhr-run with --overlay and --report (centred windows)."""
    out = video.parent
    invoke(run_main, [video, "--model", disfa_short_bundle, "--out", out / "talk.csv", "--overlay",
                      out / "talk_overlay.mp4", "--report", out / "talk.html", "--backend", "onnxruntime"])
    return out


@pytest.fixture(scope="module")
def browser():
    if not have_chromium():
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    with chromium() as b:
        yield b


def test_overlay_has_the_inputs_frames_and_boxes_where_the_csv_says(run, video):
    frames, rate = decoded(run / "talk_overlay.mp4")
    source, _ = decoded(video)
    rows = read_rows(run / "talk.csv")
    assert len(frames) == len(source) == len(rows) == 36
    assert frames[0].shape == source[0].shape == (360, 640, 3)
    assert float(rate) == FPS
    blue = np.asarray(face_colour(None), dtype=np.float32)
    red = np.asarray(MISSING, dtype=np.float32)
    assert any(r["success"] == "0" for r in rows) and any(r["success"] == "1" for r in rows)
    for frame, original, row in zip(frames, source, rows):
        border = frame[5:355, 1].astype(np.float32)  # the left edge of the picture
        if row["success"] == "0":
            assert np.abs(border - red).mean() < 50, f"frame {row['frame']}: no red mark where no face was found"
            continue
        assert np.abs(border - red).mean() > 80
        x, y, w, h = (float(row[k]) for k in ("face_x", "face_y", "face_w", "face_h"))
        left, bottom = int(round(x)), int(round(y + h))
        # the box's left and bottom edges (top and right carry the label and the AU bars)
        edge = np.concatenate([frame[int(y + h * 0.3):int(y + h * 0.7), left],
                               frame[bottom, int(x + w * 0.3):int(x + w * 0.7)]]).astype(np.float32)
        inside = frame[int(y + h * 0.3):int(y + h * 0.7), left + 12].astype(np.float32)
        assert np.abs(edge - blue).mean() < 45, f"frame {row['frame']}: no box at the CSV's {x, y, w, h}"
        assert np.abs(inside - blue).mean() > 60
        assert np.abs(original[int(y + h * 0.3):int(y + h * 0.7), left].astype(np.float32) - blue).mean() > 60


def click_column(page, column: int, panel: int = 0) -> None:
    box = page.locator("canvas.timeline").nth(panel).bounding_box()
    columns = page.evaluate("window.mdhrReport.columns")
    page.mouse.click(box["x"] + (column + 0.5) / columns * box["width"], box["y"] + box["height"] / 2)


def shown_clock(page) -> np.ndarray:
    """The clock region of the frame the video element shows now."""
    pixels = page.evaluate("""() => {
        const v = document.getElementById('video');
        const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d'); g.drawImage(v, 0, 0);
        return Array.from(g.getImageData(0, 330, 220, 30).data); }""")
    return np.asarray(pixels, dtype=np.float32).reshape(30, 220, 4)[..., :3]


def test_report_loads_alone_and_its_timeline_follows_the_video(run, browser, tmp_path):
    rows = read_rows(run / "talk.csv")
    aus = [c[:-len("_score")] for c in rows[0] if c.endswith("_score")]
    opened = open_report(browser, run / "talk.html")
    page = opened.page
    assert page.locator("#untrained").count() == 1  # the DISFA bundle is untrained
    canvas = page.locator("canvas.timeline")
    assert canvas.count() == 1
    assert page.evaluate("[document.querySelector('canvas.timeline').width, "
                         "document.querySelector('canvas.timeline').height]") == [len(rows), len(aus)]
    assert page.locator(".au-label").all_inner_texts() == aus
    # grey exactly on the frames without a face
    cells = np.asarray(page.evaluate("""() => { const c = document.querySelector('canvas.timeline');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, 1).data); }""")).reshape(-1, 4)
    grey = (cells[:, :3] == 217).all(axis=1)
    assert grey.tolist() == [r["success"] == "0" for r in rows]

    page.wait_for_function("document.getElementById('video').readyState >= 2")
    duration = page.evaluate("document.getElementById('video').duration")
    assert abs(duration - len(rows) / FPS) < 1.5 / FPS
    overlay, _ = decoded(run / "talk_overlay.mp4")
    for column in (7, 29):
        click_column(page, column)
        page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - "
                               f"{float(rows[column]['timestamp'])}) < {0.5 / FPS} && "
                               "!document.getElementById('video').seeking")
        page.wait_for_timeout(150)
        assert page.evaluate("window.mdhrReport.cursorColumn()") == column
        clock = shown_clock(page)
        distance = [np.abs(clock - f[CLOCK].astype(np.float32)).mean() for f in overlay]
        assert int(np.argmin(distance)) == column, "the video does not show the clicked frame"

    click_column(page, 0)
    page.evaluate("document.getElementById('video').play()")
    page.wait_for_function("document.getElementById('video').currentTime > 0.4")
    page.evaluate("document.getElementById('video').pause()")
    page.wait_for_timeout(100)
    state = page.evaluate("""() => { const v = document.getElementById('video');
        return [window.mdhrReport.cursorColumn(), window.mdhrReport.columnAt(v.currentTime),
                parseFloat(document.querySelector('.cursor').style.left)]; }""")
    assert state[0] == state[1] >= 12
    assert abs(state[2] - (state[0] + 0.5) / len(rows) * 100) < 1e-3
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert opened.console_errors == []
    assert opened.requests and opened.remote_requests == []


def test_mdhr_report_compares_two_runs_of_the_same_video(run, video, model_detector, disfa_model_bundle, browser):
    official = model_detector.predict_video(video, windows="official").write_csv(run / "official.csv")
    centred, other = read_rows(run / "talk.csv"), read_rows(official)
    aus = [c[:-len("_score")] for c in centred[0] if c.endswith("_score")]
    scores = np.asarray([[float(r[f"{au}_score"]) for au in aus] for r in centred if r["success"] == "1"])
    threshold = float(np.median(scores))  # an untrained model's scores sit close together: split them
    invoke(report_main, [run / "talk.csv", official, "--html", run / "compare.html", "--model",
                         disfa_model_bundle, "--threshold", threshold])
    opened = open_report(browser, run / "compare.html")
    page = opened.page
    assert page.locator("#video").count() == 0
    assert page.locator("canvas.timeline[data-kind=score]").count() == 2
    assert page.locator("canvas.timeline[data-kind=diff]").count() == 1
    assert page.locator("#untrained").count() == 1
    shown = page.locator("table.differences tr").all_inner_texts()[1:]
    for au, line in zip(aus, shown):
        both = [(float(a[f"{au}_score"]), float(b[f"{au}_score"])) for a, b in zip(centred, other)
                if a["success"] == b["success"] == "1"]
        flips = sum((x >= threshold) != (y >= threshold) for x, y in both)
        mean = np.mean([abs(x - y) for x, y in both])
        cells = line.split("\t")
        assert cells[0] == au and cells[1] == f"{flips} of {len(both)}"
        assert abs(float(cells[2]) - mean) < 2e-3
    assert sum(int(line.split("\t")[1].split()[0]) for line in shown) > 0, "the two runs never differ?"
    active = page.locator("table.stats").first.locator("tr").all_inner_texts()[1:]
    for au, line in zip(aus, active):
        column = [float(r[f"{au}_score"]) for r in centred if r["success"] == "1"]
        assert line.split("\t")[1] == f"{np.mean([s >= threshold for s in column]):.1%}"
    assert opened.console_errors == [] and opened.remote_requests == []


def test_every_face_csv_reads_back_and_reports_one_panel_per_face(video, detector, browser, tmp_path):
    from mdhr_runtime.results.readback import read_csv
    from mdhr_runtime.results.report import write_report

    table = detector.predict_video(video, faces="all", windows="official")
    back = read_csv(table.write_csv(tmp_path / "all.csv"))
    assert back.face_ids and back.ids() == table.ids() and len(back) == len(table)
    for a, b in zip(table.rows, back.rows):
        assert (a.index, a.face_id, a.face.success) == (b.index, b.face_id, b.face.success)
        if a.scores is not None:
            assert np.abs(a.scores - b.scores).max() < 1e-4
    info = write_report(back, video, tmp_path / "all.html", {"faces": "all"})
    assert info.video == "embedded"
    opened = open_report(browser, info.path)
    faces = opened.page.locator(".panel").evaluate_all("panels => panels.map(p => p.dataset.face)")
    assert faces == [f"face {i}" for i in sorted(table.ids())]
    assert opened.console_errors == [] and opened.remote_requests == []


def test_a_long_timeline_is_thinned_keeping_short_activations(browser, tmp_path):
    """An hour at 5 fps (18000 frames) of made-up scores: this tests the
    thinning, not the model.  One frame's activation must survive."""
    from mdhr_runtime.faces.tracking import FaceResult
    from mdhr_runtime.results.report import write_report
    from mdhr_runtime.results.summary import MAX_COLUMNS
    from mdhr_runtime.results.table import FrameRow, FrameTable

    frames, spike = 18000, 12345
    scores = np.random.default_rng(0).uniform(-1, 0.4, (frames, 3)).astype(np.float32)
    scores[spike, 1] = 0.9
    table = FrameTable(["AU01", "AU02", "AU04"],
                       rows=[FrameRow(i, i / 5, FaceResult(True, 1.0, (0, 0, 10, 10)), scores[i]) for i in range(frames)])
    info = write_report(table, None, tmp_path / "long.html")
    per_column = -(-frames // MAX_COLUMNS)
    assert info.frames_per_column == per_column
    opened = open_report(browser, info.path)
    size = opened.page.evaluate("[document.querySelector('canvas.timeline').width, "
                                "document.querySelector('canvas.timeline').height]")
    assert size == [-(-frames // per_column), 3]
    row = np.asarray(opened.page.evaluate("""() => { const c = document.querySelector('canvas.timeline');
        return Array.from(c.getContext('2d').getImageData(0, 1, c.width, 1).data); }""")).reshape(-1, 4)
    orange = np.flatnonzero(row[:, 0] > row[:, 2] + 50)
    assert orange.tolist() == [spike // per_column]
    assert re.search(rf"highest score of {per_column} frames", opened.page.content())
    assert opened.console_errors == []


def test_bad_paths_and_inputs_are_refused_in_one_line(video, disfa_short_bundle, tmp_path, photo):
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "link.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    odd = tmp_path / "odd.png"  # video writers round sizes to even; an image keeps it
    cv2.imwrite(str(odd), cv2.resize(photo, (321, 181)))
    base = [video, "--model", disfa_short_bundle, "--out", tmp_path / "x.csv"]
    cases = [
        (run_main, base + ["--overlay", tmp_path / "folder.mp4"], "is a folder"),
        (run_main, base + ["--overlay", tmp_path / "link.mp4"], "symbolic link"),
        (run_main, base + ["--report", tmp_path / "talk.html", "--overlay", video], "would replace INPUT"),
        (run_main, ["--camera", "0", "--model", disfa_short_bundle, "--out", tmp_path / "x.csv", "--report",
                    tmp_path / "r.html"], "give INPUT instead of --camera"),
        (run_main, [odd, "--model", disfa_short_bundle, "--out", tmp_path / "x.csv", "--overlay",
                    tmp_path / "o.mp4"], "even width and height"),
        (report_main, [video, "--html", tmp_path / "r.html"], "is not a text CSV"),
    ]
    (tmp_path / "short.csv").write_text("frame,timestamp\n1,0\n")
    cases.append((report_main, [tmp_path / "short.csv", "--html", tmp_path / "r.html"], "not an mdhr-run CSV"))
    for main, args, words in cases:
        result = invoke(main, args, EXIT_USER_ERROR)
        lines = [line for line in result.output.splitlines() if line.startswith("error")]
        assert len(lines) == 1 and words in lines[0], result.output
        assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.html")) and not (tmp_path / "x.csv").exists()


def test_statistics_count_only_the_frames_where_the_face_was_scored():
    from mdhr_runtime.faces.tracking import FaceResult
    from mdhr_runtime.results.summary import summarise
    from mdhr_runtime.results.table import FrameRow, FrameTable

    first = [-0.2, 0.6, 0.7, 0.8, None, 0.1, 0.9, -0.5, 0.55]  # None: no face on that frame
    table = FrameTable(["AU01", "AU02"], threshold=0.5)
    for i, s in enumerate(first):
        face = FaceResult(True, 1.0, (0, 0, 5, 5)) if s is not None else FaceResult.missing()
        table.rows.append(FrameRow(i, i / 10, face, None if s is None else np.asarray([s, -1.0], np.float32)))
    summary = summarise(table)
    au01, au02 = summary.stats(summary.faces[0])
    assert summary.frames == 9 and summary.frames_with_face == 8
    assert au01.active_share == 5 / 8 and au01.longest_frames == 3 and abs(au01.longest_seconds - 0.3) < 1e-9
    assert abs(au01.mean_score - np.mean([s for s in first if s is not None])) < 1e-6
    assert au02.active_share == 0 and au02.longest_frames == 0 and au02.mean_score == -1
    assert summary.most_active() == ["AU01 62%"]


def test_a_report_too_large_to_embed_puts_its_video_beside_it_with_the_other_outputs(
        video, disfa_short_bundle, tmp_path, monkeypatch):
    """Without --overlay the report stages its annotated video with mdhr-run's
    other outputs: embedded when small (nothing left beside the report),
    else renamed into place beside it together with the rest."""
    from mdhr_runtime.results import report

    small = tmp_path / "small.html"
    invoke(run_main, [video, "--model", disfa_short_bundle, "--out", tmp_path / "small.csv", "--report", small])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv", "small.html"]
    monkeypatch.setattr(report, "EMBED_LIMIT", 1)
    large = tmp_path / "large.html"
    invoke(run_main, [video, "--model", disfa_short_bundle, "--out", tmp_path / "large.csv", "--report", large])
    beside = report.video_beside(large)
    assert beside.is_file() and f'href="{beside.name}"' in large.read_text()
    assert len(decoded(beside)[0]) == len(decoded(video)[0])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
