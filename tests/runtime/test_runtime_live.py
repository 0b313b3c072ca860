"""mdhr-run on a live source: a video file opened as a synthetic camera
(OpenCV reads it like a stream), the window mode in --json, and a clean
Ctrl-C that still writes what was scored."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdhr_runtime.cli.run import main
from tests.support.footage import face_video
from tests.support.synthetic import FootageMaker, Segment, write_video


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory, photo):
    return face_video(tmp_path_factory.mktemp("camera") / "camera.mp4", photo,
                      (Segment("moving", 14), Segment("empty", 4), Segment("clean", 6)))


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_camera_source_streams_every_frame(disfa_short_bundle, camera_video, tmp_path):
    video, has_face = camera_video
    out, js = tmp_path / "live.csv", tmp_path / "live.json"
    result = CliRunner().invoke(main, ["--camera", str(video), "--model", str(disfa_short_bundle),
                                       "--out", str(out), "--json", str(js), "--hop", "2"])
    assert result.exit_code == 0, result.output
    assert "fps" in result.output and "latency" in result.output and "source ended" in result.output
    table = rows(out)
    assert [int(r["frame"]) for r in table] == list(range(1, len(has_face) + 1))
    assert [r["success"] == "1" for r in table] == has_face
    meta = json.loads(js.read_text())["metadata"]
    assert meta["windows"] == {"mode": "centred", "frames": 4, "hop": 2, "latency_frames": 2}


def test_file_json_records_official_windows(disfa_short_bundle, camera_video, tmp_path):
    video, has_face = camera_video
    out, js = tmp_path / "f.csv", tmp_path / "f.json"
    result = CliRunner().invoke(main, [str(video), "--model", str(disfa_short_bundle), "--out", str(out),
                                       "--json", str(js), "--windows", "official"])
    assert result.exit_code == 0, result.output
    assert json.loads(js.read_text())["metadata"]["windows"]["mode"] == "official"
    assert len(rows(out)) == len(has_face)


def test_camera_and_input_together_or_neither_are_refused(disfa_short_bundle, camera_video, tmp_path):
    video, _ = camera_video
    for args in ([], [str(video), "--camera", "0"]):
        result = CliRunner().invoke(main, [*args, "--model", str(disfa_short_bundle), "--out", str(tmp_path / "x.csv")])
        assert result.exit_code == 2 and "either INPUT" in result.output
    result = CliRunner().invoke(main, ["--camera", str(tmp_path / "nothing.mp4"), "--model", str(disfa_short_bundle)])
    assert result.exit_code == 2 and "cannot open stream" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_ctrl_c_stops_cleanly_and_writes_what_it_has(disfa_short_bundle, photo, tmp_path):
    """A long live source interrupted after a few frames: exit 0, and the CSV
    holds whole rows for every frame read, written atomically."""
    made = FootageMaker(photo).frames((Segment("clean", 400),))
    video = tmp_path / "long.mp4"
    write_video(video, [f.rgb for f in made])
    out = tmp_path / "live.csv"
    mdhr_run = Path(sys.executable).with_name("mdhr-run")  # the installed console script
    process = subprocess.Popen([str(mdhr_run), "--camera", str(video),
                                "--model", str(disfa_short_bundle), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.monotonic() + 300
    while seen.count(b" fps") < 6 and time.monotonic() < deadline:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    message = (seen + rest).decode()
    assert process.returncode == 0, message
    assert "stopped (Ctrl-C)" in message and "Traceback" not in message
    table = rows(out)
    assert 6 <= len(table) < 400
    assert [int(r["frame"]) for r in table] == list(range(1, len(table) + 1))
    assert all(r["AU01_score"] for r in table if r["success"] == "1")
    assert not list(tmp_path.glob(".live.csv*")), "temporary file left behind"
