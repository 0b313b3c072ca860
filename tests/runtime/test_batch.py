"""mdhr-batch on a local Ray cluster the tests start (2 CPUs), over short
videos made here plus a corrupt, a faceless, a truncated and a missing one;
and long videos split into segments and stitched back."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr_runtime import AUDetector
from mdhr_runtime.batch.corpus import expand_inputs, output_names
from mdhr_runtime.batch.segments import Segment as VideoSegment
from mdhr_runtime.batch.segments import SegmentPlan, predict_segment, stitch
from mdhr_runtime.cli.batch import main as batch_main
from mdhr_runtime.cli.common import EXIT_SOME_FAILED, EXIT_USER_ERROR
from mdhr_runtime.windows.streams import WindowPlan
from tests.support.synthetic import FootageMaker, Segment, write_video

ray = pytest.importorskip("ray")

STITCH_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def local_ray():
    """A small local cluster for the module; mdhr-batch joins a running one."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=96 * 2**20, log_to_driver=False,
             logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photo):
    """Two videos named clip.mp4 in different folders (one with a faceless
    stretch), a faceless one, a corrupt one and a truncated one."""
    root = tmp_path_factory.mktemp("corpus")
    maker = FootageMaker(photo, size=(320, 180))
    (root / "a").mkdir()
    (root / "b").mkdir()
    write_video(root / "a" / "clip.mp4", [f.rgb for f in maker.frames(
        (Segment("clean", 26), Segment("empty", 4), Segment("clean", 10)))])
    write_video(root / "b" / "clip.mp4", [f.rgb for f in maker.frames((Segment("still", 8, speed=0.1),))])
    write_video(root / "b" / "faceless.mp4", [f.rgb for f in maker.frames((Segment("empty", 4),))])
    (root / "b" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    whole = root / "whole.avi"
    write_video(whole, [f.rgb for f in maker.frames((Segment("clean", 12),))], codec="MJPG")
    (root / "b" / "cut.avi").write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    whole.unlink()
    return root


@pytest.fixture(scope="module")
def detector(disfa_short_bundle):
    with AUDetector(disfa_short_bundle, backend="onnxruntime", threads=2) as d:
        yield d


@pytest.fixture(scope="module")
def reference(detector, corpus):
    """``mdhr-run``'s tables (AUDetector.predict_video, its defaults: centred
    windows) of the videos with frames: mdhr-batch has the same defaults."""
    return {name: detector.predict_video(corpus / name)
            for name in ("a/clip.mp4", "b/clip.mp4", "b/faceless.mp4")}


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def written_by_mdhr_run(table, tmp_path: Path) -> list[dict]:
    return read_rows(table.write_csv(tmp_path / "reference.csv"))


def batch(args, expect):
    result = CliRunner().invoke(batch_main, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module")
def first_run(local_ray, corpus, disfa_short_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    missing = corpus / "gone.mp4"
    result = batch([corpus, missing, "--model", disfa_short_bundle, "--out", out, "--workers", 2, "--json"],
                   EXIT_SOME_FAILED)
    return out, json.loads(result.stdout)


def test_every_video_gets_its_row_and_status(first_run, corpus):
    out, report = first_run
    summary = {Path(r["path"]).relative_to(corpus).as_posix(): r for r in read_rows(out / "summary.csv")}
    assert {k: r["status"] for k, r in summary.items()} == {
        "a/clip.mp4": "ok", "b/clip.mp4": "ok", "b/faceless.mp4": "failed", "b/broken.mp4": "failed",
        "b/cut.avi": "partial", "gone.mp4": "failed"}
    assert summary["gone.mp4"]["error"].startswith("input not found")
    assert "cannot open" in summary["b/broken.mp4"]["error"] and summary["b/broken.mp4"]["output"] == ""
    assert "no face" in summary["b/faceless.mp4"]["error"]
    assert "truncated" in summary["b/cut.avi"]["error"]
    assert summary["a/clip.mp4"]["frames"] == "40" and summary["a/clip.mp4"]["frames_with_face"] == "36"
    assert len({r["bundle_hash"] for r in summary.values()}) == 1
    assert report["ok"] == 2 and report["videos"] == 6 and report["tasks_run"] == 4


def test_outputs_mirror_the_inputs_and_equal_mdhr_run(first_run, corpus, reference, tmp_path):
    out, _ = first_run
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/clip.csv", "b/clip.csv", "b/cut.csv", "b/faceless.csv", "summary.csv"]
    for name, table in reference.items():
        assert read_rows(out / Path(name).with_suffix(".csv")) == written_by_mdhr_run(table, tmp_path), name
    cut = read_rows(out / "b" / "cut.csv")
    assert 0 < len(cut) < 12


def test_a_rerun_does_no_work(first_run, corpus, disfa_short_bundle):
    out, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.csv") if p.name != "summary.csv"}
    result = batch([corpus, "--model", disfa_short_bundle, "--out", out, "--json"], EXIT_SOME_FAILED)
    report = json.loads(result.stdout)
    statuses = {Path(r["path"]).name: r["status"] for r in report["rows"]}
    # Complete outputs are skipped (the faceless one with its reason kept);
    # the corrupt one fails again at its probe and the truncated one, whose
    # output is partial, is redone.
    assert statuses["clip.mp4"] == "skipped" and statuses["faceless.mp4"] == "skipped"
    assert statuses["broken.mp4"] == "failed" and statuses["cut.avi"] == "partial"
    assert report["tasks_run"] == 1
    assert [r["error"] for r in report["rows"] if r["path"].endswith("faceless.mp4")][0].startswith("no face")
    after = {p: p.stat().st_mtime_ns for p in before}
    assert {p: t for p, t in after.items() if p.name != "cut.csv"} == \
           {p: t for p, t in before.items() if p.name != "cut.csv"}


def test_segments_on_workers_stitch_to_the_whole_run(local_ray, corpus, disfa_short_bundle, reference, tmp_path):
    """40 frames in segments of 12 (three workers' tasks), equal to mdhr-run."""
    out = tmp_path / "out"
    result = batch([corpus / "a" / "clip.mp4", "--model", disfa_short_bundle, "--out", out, "--workers", 2,
                    "--segment-frames", 12, "--json"], 0)
    assert json.loads(result.stdout)["tasks_run"] == 3
    stitched, whole = read_rows(out / "clip.csv"), written_by_mdhr_run(reference["a/clip.mp4"], tmp_path)
    assert worst_difference(stitched, whole) <= STITCH_TOLERANCE


def worst_difference(rows: list[dict], expected: list[dict]) -> float:
    """Largest AU score difference; the rows must agree on frames and success."""
    assert [(r["frame"], r["success"]) for r in rows] == [(r["frame"], r["success"]) for r in expected]
    scores = [k for k in rows[0] if k.endswith("_score")]
    gaps = [abs(float(r[k]) - float(e[k])) for r, e in zip(rows, expected) for k in scores if e[k]]
    return max(gaps)


@pytest.mark.parametrize("windows", ["official"])
def test_a_segment_warmed_from_a_search_frame_matches(model_detector, corpus, windows):
    """The real model (its tolerance is the real features' sensitivity to
    where the crop lands).  No warm-up beyond the tracker's search grid: the second segment
    starts tracking at frame 30 (a search frame) and scores from 32, after
    the faceless stretch: within tolerance of the whole run.  (Centred
    windows reach back to frames 30-31, tracked cold here: 1.16e-3 measured
    2026-12-02; the real warm-up, TRACKER_WARMUP_FRAMES, covers that
    context, and test_one_pipeline's segments are bit-identical.)"""
    plan = SegmentPlan(32, WindowPlan.make(windows, model_detector.bundle.frames), warmup_frames=0)
    segments = plan.segments(40)
    scored_from = {"official": 32, "centred": 30}[windows]
    assert segments[1] == VideoSegment(start=32, stop=None, read_from=30, scored_from=scored_from)
    table = stitch([predict_segment(model_detector, corpus / "a" / "clip.mp4", s, windows) for s in segments],
                   model_detector.au_names, model_detector.threshold)
    whole = model_detector.predict_video(corpus / "a" / "clip.mp4", windows=windows)
    assert table.complete and [r.face.success for r in table.rows] == [r.face.success for r in whole.rows]
    gap = np.nanmax(np.abs(table.score_matrix() - whole.score_matrix()))
    assert np.array_equal(np.isnan(table.score_matrix()), np.isnan(whole.score_matrix()))
    assert gap <= STITCH_TOLERANCE


def test_segment_plan_aligns_to_windows_and_the_search_grid():
    plan = SegmentPlan(1000, WindowPlan.make("official", 16))
    segments = plan.segments(3050)
    assert [(s.start, s.stop) for s in segments] == [(0, 1008), (1008, 2016), (2016, None)]
    for s in segments:
        assert s.start % 16 == 0 and s.read_from % 30 == 0 and s.start - s.read_from >= plan.warmup_frames \
            or s.read_from == 0
    # Centred windows read half a window of context on each side.
    centred = SegmentPlan(1000, WindowPlan.make("centred", 16)).segments(3050)[1]
    assert (centred.start, centred.stop) == (1000, 2000)
    assert centred.scored_from == centred.start - 8 and centred.read_to == centred.stop + 8
    assert plan.segments(None) == plan.segments(500) == [VideoSegment(0, None, 0, 0)]


def test_output_names_never_collide(tmp_path):
    videos = [tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4", tmp_path / "y" / "clip.avi",
              tmp_path / "summary.mp4"]
    names = output_names(videos)
    assert names == {videos[0]: "x/clip.csv", videos[1]: "y/clip.mp4.csv", videos[2]: "y/clip.avi.csv",
                     videos[3]: "summary.mp4.csv"}
    # An earlier run's names are kept; new videos avoid them.
    again = output_names(videos + [tmp_path / "x" / "clip.mkv"], taken=names)
    assert {k: again[k] for k in names} == names and again[tmp_path / "x" / "clip.mkv"] == "x/clip.mkv.csv"


def test_inputs_from_folders_globs_and_lists(corpus, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two videos\n{corpus / 'a' / 'clip.mp4'}\n\n{corpus}/b/*.mp4\n")
    found = expand_inputs([f"@{listing}", str(corpus / "a")])
    assert [p.relative_to(corpus).as_posix() for p in found] == [
        "a/clip.mp4", "b/broken.mp4", "b/clip.mp4", "b/faceless.mp4"]
    assert len(expand_inputs([str(corpus)])) == 5


def test_bad_bundle_or_out_refused_before_work(corpus, tmp_path, disfa_short_bundle):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for args, words in (
        ([corpus, "--model", tmp_path / "nobundle", "--out", tmp_path / "o"], "no such bundle folder"),
        ([corpus, "--model", disfa_short_bundle, "--out", a_file], "not a folder"),
        ([f"@{tmp_path / 'missing.txt'}", "--model", disfa_short_bundle, "--out", tmp_path / "o"],
         "cannot read the input list"),
        ([tmp_path / "o", "--model", disfa_short_bundle, "--out", tmp_path / "o2"], "no videos found"),
    ):
        (tmp_path / "o").mkdir(exist_ok=True)
        result = CliRunner().invoke(batch_main, [str(a) for a in args])
        assert result.exit_code == EXIT_USER_ERROR, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output
    assert not (tmp_path / "o2").exists()


def test_sigterm_stops_the_job_cleanly(corpus, disfa_short_bundle, tmp_path):
    """A real mdhr-batch process (its own local Ray), terminated once the
    first video is done: exit 143, the finished videos in summary.csv with
    their CSVs, and no staging or partial file anywhere under --out."""
    import os
    import signal
    import subprocess
    import sys
    import time

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("one", "two", "three", "four"):
        (videos / f"{name}.mp4").write_bytes((corpus / "a" / "clip.mp4").read_bytes())
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-c", "from mdhr_runtime.cli.batch import main; main()", str(videos),
                            "--model", str(disfa_short_bundle), "--out", str(out), "--workers", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "RAY_ADDRESS": ""})
    def finished():
        summary = out / "summary.csv"
        return summary.is_file() and any(r["status"] == "ok" for r in read_rows(summary))

    deadline = time.monotonic() + 240
    while not finished() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None, f"the job ended before it could be stopped: {job.stderr.read()[-500:]}"
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stderr[-800:]
    done = [r for r in read_rows(out / "summary.csv") if r["status"] == "ok"]
    assert 1 <= len(done) < 4
    assert all((out / r["output"]).is_file() for r in done)
    assert len(list(out.glob("*.csv"))) == len(done) + 1  # the finished videos' CSVs and the summary
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    assert leftovers == []


def test_every_face_in_a_corpus(local_ray, disfa_short_bundle, detector, photo, tmp_path):
    """--faces all: the CSV of each video is mdhr-run --faces all's (both in
    their default, centred windows)."""
    from tests.support.crowd import side_by_side
    from tests.support.footage import crowd_video

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    video, _ = crowd_video(corpus / "pair.mp4", photo, 2, side_by_side(2, size=(320, 180)), 6, size=(320, 180))
    out = tmp_path / "out"
    batch([corpus, "--model", disfa_short_bundle, "--out", out, "--faces", "all"], 0)
    expected = detector.predict_video(video, faces="all")
    rows = read_rows(out / "pair.csv")
    assert rows == written_by_mdhr_run(expected, tmp_path)
    assert [(r["frame"], r["face_id"]) for r in rows][:2] == [("1", "0"), ("1", "1")]
    assert read_rows(out / "summary.csv")[0]["frames"] == "6"
    refused = CliRunner().invoke(batch_main, [str(corpus), "--model", str(disfa_short_bundle), "--out",
                                              str(tmp_path / "o2"), "--faces", "all", "--segment-frames", "100"])
    assert refused.exit_code == EXIT_USER_ERROR and "--faces all scores whole videos" in refused.output


def test_batch_reports_and_their_index(first_run, corpus, disfa_short_bundle, tmp_path):
    """--report on a rerun: every video with a CSV gets its report (skipped
    ones too), the index one row per video with a link; opened in Chromium."""
    import shutil

    from tests.support.browser import chromium, have_chromium, open_report

    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    batch([corpus, "--model", disfa_short_bundle, "--out", out, "--report"], EXIT_SOME_FAILED)
    summary = read_rows(out / "summary.csv")
    reports = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert reports == ["a/clip.html", "b/clip.html", "b/cut.html", "b/faceless.html", "index.html"]
    if not have_chromium():
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    with chromium() as browser:
        index = open_report(browser, out / "index.html", ready=None)
        rows = index.page.locator("tr.video").all_inner_texts()
        assert len(rows) == len(summary)
        clip = next(r for r in rows if r.startswith(str(corpus / "a" / "clip.mp4")))
        assert clip.split("\t")[1:4] == ["skipped", "40", "90%"]  # done before; 36 of 40 frames with a face
        index.page.locator("tr.video", has_text=str(corpus / "a" / "clip.mp4")).locator("a").click()
        index.page.wait_for_function("window.mdhrReport !== undefined")
        assert index.page.url.endswith("/a/clip.html")
        assert index.page.evaluate("document.querySelector('canvas.timeline').width") == 40
        assert index.console_errors == [] and index.remote_requests == []
