"""mdhr-demo: the whole job on the shipped sample video, on a cached bundle."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest

from mdhr_demo.cli import DEMO_BUNDLE_NAME, SAMPLE_VIDEO, cached_bundle_problem

SAMPLE_FRAMES = 90
SAMPLE_FRAMES_WITH_FACE = 78  # scripts/demo_sample.py: 48 + 30 frames with the face, 12 without


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from mdhr_demo.cli import main; main()", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory, disfa_short_bundle):
    """A cache already holding the demo's bundle: the test session's DISFA
    4-frame bundle is the very export the demo makes (same flags, seed 0),
    copied rather than exported again (copies, not links: ONNX readers refuse
    weights files behind links)."""
    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(disfa_short_bundle, cache / DEMO_BUNDLE_NAME)
    return cache


def test_the_sample_video_ships_with_the_package():
    assert SAMPLE_VIDEO.is_file() and SAMPLE_VIDEO.stat().st_size < 200_000


@pytest.fixture(scope="module")
def demo_run(demo_cache, tmp_path_factory):
    """One demo run (a path with a space, as users' folders have)."""
    out = tmp_path_factory.mktemp("demo") / "demo out"
    return out, demo("--out", str(out), "--cache", str(demo_cache))


def test_demo_reuses_its_cached_bundle_and_writes_every_output(demo_cache, demo_run):
    out, result = demo_run
    assert result.returncode == 0, result.stderr
    assert f"bundle: reusing {demo_cache / DEMO_BUNDLE_NAME}" in result.stderr
    assert "exporting" not in result.stderr
    assert "UNTRAINED" in result.stderr.splitlines()[-1]
    # stdout: where the outputs are, one path a line
    written = result.stdout.split("\n")[:-1]
    assert written == [str(out / name) for name in ("sample.csv", "sample_timeline.png", "report.html")]
    with open(out / "sample.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == SAMPLE_FRAMES
    assert sum(row["success"] == "1" for row in rows) == SAMPLE_FRAMES_WITH_FACE
    assert (out / "sample_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "untrained" in html.lower()
    assert "http://" not in html and "https://" not in html.replace("https://github.com", "")


def test_demo_output_equals_mdhr_run_on_the_sample(demo_cache, demo_run, tmp_path):
    """The demo runs mdhr-run itself: the same CSV as running it by hand."""
    out, _ = demo_run
    by_hand = tmp_path / "by_hand.csv"
    result = subprocess.run([sys.executable, "-c", "from mdhr_runtime.cli.run import main; main()",
                             str(SAMPLE_VIDEO), "--model", str(demo_cache / DEMO_BUNDLE_NAME), "--out", str(by_hand)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert by_hand.read_text() == (out / "sample.csv").read_text()


def test_a_cache_that_is_a_file_is_refused_in_one_line(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    result = demo("--out", str(tmp_path / "out"), "--cache", str(cache))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --cache {cache} is not a folder; give a folder for the demo's bundle"


def test_a_cached_bundle_of_another_kind_is_not_reused(tmp_path, disfa_short_bundle):
    assert cached_bundle_problem(tmp_path / "absent") == "none cached yet"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mdhr.json").write_text("{not json")
    assert cached_bundle_problem(broken) is not None
    assert cached_bundle_problem(disfa_short_bundle) is None
