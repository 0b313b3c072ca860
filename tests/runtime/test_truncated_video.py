"""A video not read to its end: mdhr-run writes the rows it read, says so
in one line (FFmpeg's own messages silenced), exits 4 and records
complete: false and why."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mdhr_runtime.cli.run import main as run_main
from tests.support.refusals import run_args


@pytest.fixture(scope="module")
def truncated_video(face_avi, tmp_path_factory):
    """The face video cut at 40% of its bytes, as a interrupted copy leaves it."""
    data = face_avi.read_bytes()
    path = tmp_path_factory.mktemp("cut") / "cut.avi"
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def test_truncated_video_writes_its_rows_and_exits_4(disfa_short_bundle, face_avi, truncated_video, tmp_path):
    """A real process, so FFmpeg's own complaints (written by C code to the
    process's stderr) are seen: only our line may be there."""
    out, js = tmp_path / "cut.csv", tmp_path / "cut.json"
    code = "from mdhr_runtime.cli.run import main; main()"
    result = subprocess.run([sys.executable, "-c", code, str(truncated_video), "--model", str(disfa_short_bundle),
                             "--out", str(out), "--json", str(js)], capture_output=True, text=True, timeout=300)
    rows = list(csv.DictReader(open(out, newline="")))
    read = len(rows)
    assert 0 < read < 24
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if "UNTRAINED" not in line]  # the bundle is random-init
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {truncated_video} was not read to its end: "), lines
    assert "decoding stopped at " in lines[0] and lines[0].endswith(f"of the 0.80 s the container declares; the file is truncated or damaged, and the {read} "
                             f"frames read were written to {out}"), lines
    document = json.loads(js.read_text())
    assert document["complete"] is False and document["frames_read"] == read
    assert "decoding stopped at 0.33 s of the 0.80 s" in document["incomplete_reason"]
    assert document["frames_declared"] == 24 and len(document["frames"]) == read


def test_whole_video_is_complete(disfa_short_bundle, face_avi, tmp_path):
    js = tmp_path / "whole.json"
    result = CliRunner().invoke(run_main, [str(a) for a in run_args(face_avi, disfa_short_bundle,
                                                                    tmp_path / "whole.csv", "--json", js)])
    assert result.exit_code == 0, result.output
    document = json.loads(js.read_text())
    assert document["complete"] is True and document["frames_read"] == document["frames_declared"] == 24
    assert document["incomplete_reason"] is None


def test_bench_and_parity_say_when_their_video_is_truncated(disfa_short_bundle, truncated_video, tmp_path):
    """mdhr-bench --video and mdhr-parity --video use the frames that decode
    and say, once, that the file ended early; the bench JSON records it."""
    from mdhr_bench.cli import bench_main, parity_main

    js = tmp_path / "bench.json"
    result = CliRunner().invoke(bench_main, ["--model", str(disfa_short_bundle), "--backends", "onnxruntime",
                                             "--warmup", "0", "--iters", "1", "--video", str(truncated_video),
                                             "--json", str(js)])
    assert result.exit_code == 0, result.output
    video = json.loads(js.read_text())["video"]
    assert video["complete"] is False and video["frames_declared"] == 24 and 0 < video["frames"] < 24
    warning = (f"warning: read {video['frames']} of 24 frames of {truncated_video}: the file is truncated or "
               "damaged; the frames read were used")
    assert result.output.count(warning) == 1
    result = CliRunner().invoke(parity_main, ["--model", str(disfa_short_bundle), "--backends", "onnxruntime",
                                              "--video", str(truncated_video)])
    assert result.output.count(f"warning: read {video['frames']} of 24 frames of {truncated_video}") == 1, \
        result.output
