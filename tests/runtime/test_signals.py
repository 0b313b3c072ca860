"""Every command stops within 5 s of SIGINT or SIGTERM, sent to its process
or to its process group (a terminal's Ctrl-C, a scheduler, ``timeout``),
exits 130 or 143 and leaves nothing half-written: each command x signal x
target, at different moments of the run (starting, loading, working)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.io_files import write_video

STOP_WITHIN = 5.0
CASES = [(signal.SIGINT, "pid"), (signal.SIGTERM, "pid"), (signal.SIGINT, "group"), (signal.SIGTERM, "group")]
# When the signal goes, after the command started (s): while Python imports,
# while the model loads, and while the work runs.
MOMENTS = (1.0, 3.0, 6.0, 9.0)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("signals") / "long.mp4", frames=300)


@pytest.fixture(scope="module")
def report_video(tmp_path_factory) -> Path:
    """Long enough that drawing its report takes longer than the latest moment."""
    return write_video(tmp_path_factory.mktemp("signals-report") / "longer.mp4", frames=REPORT_FRAMES)


REPORT_FRAMES = 12000  # drawing 4000 took under 9 s on a quiet 2-core machine (2026-12-06)


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory) -> Path:
    """A CSV of as many frames as the report's video (no face found: the
    report still draws every frame)."""
    from mdhr_runtime.faces.tracking import FaceResult
    from mdhr_runtime.results.table import FrameRow, FrameTable

    table = FrameTable([f"AU{n:02d}" for n in (1, 2, 4, 6, 9, 12, 25, 26)], 0.5)
    for k in range(REPORT_FRAMES):
        table.rows.append(FrameRow(k, k / 30, FaceResult.missing(), None, None))
    path = tmp_path_factory.mktemp("signals-csv") / "long.csv"
    table.write_csv(path)
    return path


def command(name: str, bundle: Path, video: Path, csv: Path, out: Path, report_video: Path) -> list[str]:
    # the installed command, as a user starts it (its entry point handles
    # signals from the first moment, before its modules are imported)
    script = Path(sys.executable).parent / name
    args = {"mdhr-run": [str(video), "--model", str(bundle), "--out", str(out / "o.csv"), "--json",
                         str(out / "o.json"), "--windows", "official"],
            "mdhr-batch": [str(video), "--model", str(bundle), "--out", str(out / "batch"), "--workers", "1"],
            "mdhr-report": [str(csv), "--video", str(report_video), "--html", str(out / "r.html")],
            "mdhr-export": ["--random-init", "--dataset", "DISFA", "--frames", "4", "--out", str(out / "bundle")],
            "mdhr-bench": ["--model", str(bundle), "--backends", "onnxruntime", "--iters", "100000",
                           "--json", str(out / "b.json")],
            "mdhr-parity": ["--model", str(bundle), "--video", str(video), "--json", str(out / "p.json")],
            "mdhr-demo": ["--out", str(out / "demo"), "--cache", str(out / "cache")]}[name]
    return [str(script), *args]


def stop_once(argv: list[str], out: Path, number: int, target: str, moment: float) -> tuple[int, float, str]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                               cwd=out, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        time.sleep(moment)
        assert process.poll() is None, f"ended before the signal: {process.stderr.read().decode()[-800:]}"
        sent = time.perf_counter()
        if target == "pid":
            os.kill(process.pid, number)
        else:
            os.killpg(process.pid, number)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        took = time.perf_counter() - sent
        return code, took, process.stderr.read().decode()
    finally:
        # only while the process is unreaped: its id cannot then name another group
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def left_behind(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name not in ("cache",)
                  and not str(p.relative_to(out)).startswith("cache"))


COMMANDS = ["mdhr-run", "mdhr-report", "mdhr-bench", "mdhr-parity", "mdhr-export", "mdhr-demo", "mdhr-batch"]


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_stops_on_a_signal_to_its_process_or_group(name, tmp_path, disfa_model_bundle, long_video,
                                                                  long_csv, report_video):
    failures = []
    for run, (number, target) in enumerate(CASES):
        if (name, number, target) == KNOWN_LIMIT:
            continue  # test_mdhr_batch_sigterm_to_its_group, below
        moment = MOMENTS[run % len(MOMENTS)]
        out = tmp_path / f"run{run}"
        out.mkdir()
        argv = command(name, disfa_model_bundle, long_video, long_csv, out, report_video)
        code, took, stderr = stop_once(argv, out, number, target, moment)
        expected = 128 + number
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        problems = []
        if code != expected:
            problems.append(f"exit {code}, not {expected}")
        if took > STOP_WITHIN:
            problems.append(f"took {took:.1f} s")
        leftovers = [p for p in left_behind(out) if name != "mdhr-batch" or p.endswith(".part")]
        if leftovers:
            problems.append(f"left {leftovers}")
        if "Traceback" in stderr:
            problems.append("printed a traceback")
        if problems:
            failures.append(f"{signal.Signals(number).name} to the {target} at {moment} s: {'; '.join(problems)}"
                            f" (last line: {last[:200]})")
    assert not failures, "\n".join(failures)


# docs/errors.md, "Signals": a SIGTERM to mdhr-batch's whole group reaches the
# local Ray cluster's processes too, and their death under the driver's Ray
# core can abort it (exit -6) or slow it past the limit.  Open: measured here,
# not hidden; it passes when the driver wins the race.
KNOWN_LIMIT = ("mdhr-batch", signal.SIGTERM, "group")


@pytest.mark.slow
@pytest.mark.xfail(reason="known limit: SIGTERM to mdhr-batch's process group also kills its local Ray cluster",
                   strict=False)
def test_mdhr_batch_sigterm_to_its_group(tmp_path, disfa_model_bundle, long_video, long_csv, report_video):
    argv = command("mdhr-batch", disfa_model_bundle, long_video, long_csv, tmp_path, report_video)
    code, took, stderr = stop_once(argv, tmp_path, signal.SIGTERM, "group", MOMENTS[-1])
    assert code == 143 and took <= STOP_WITHIN and "Traceback" not in stderr, stderr[-500:]
