"""Paths checked before any work, outputs written all or nothing, staging
cleaned up (also after SIGTERM or a killed run), the user's permissions on
what is written, and a truncated video reported as such.

The commands run for real (CliRunner in-process, or a subprocess where a
signal, the process's stderr or another user is part of the test)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr.errors import MDHRError
from mdhr_bench.cli import bench_main, parity_main
from mdhr_bench.synthetic import FootageMaker, Segment, write_video
from mdhr_export.cli import build_main
from mdhr_export.cli import main as export_main
from mdhr_runtime.atomic import umask
from mdhr_runtime.cli import main as run_main
from mdhr_runtime.outputs import remove_stale_staging, staged_files

ROOT = Path(__file__).resolve().parent.parent


def one_line_refusal(command, args, *expected):
    """The command exits 2 with exactly one line, 'error: ...', holding
    every ``expected`` text, and no traceback."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith(("error", "internal error"))]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def staging_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".mdhr-" in p.name or ".partial" in p.name)


def dead_pid() -> int:
    """A process id no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, photo):
    """24 frames of a face, MJPG in AVI (a container that declares its frame
    count and still decodes when cut short)."""
    frames = [f.rgb for f in FootageMaker(photo, size=(320, 240)).frames([Segment("clean", 24, speed=0.5)])]
    path = tmp_path_factory.mktemp("video") / "face.avi"
    write_video(path, frames, codec="MJPG")
    return path


@pytest.fixture(scope="module")
def truncated_video(face_video, tmp_path_factory):
    """The face video cut at 40% of its bytes, as a interrupted copy leaves it."""
    data = face_video.read_bytes()
    path = tmp_path_factory.mktemp("cut") / "cut.avi"
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def run_args(video, bundle, out, *more):
    return [video, "--model", bundle, "--out", out, *more]


# -------------------------------------------------------- mdhr-run: paths first


def test_outputs_that_are_not_regular_files_are_refused(disfa_short_bundle, face_video, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, fifo), "is a FIFO", "not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, tmp_path), "is a folder; give a file name")
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, tmp_path / "o.csv", "--json", fifo),
                     "--json", "is a FIFO")
    assert not (tmp_path / "o.csv").exists()


def test_device_node_output_is_refused(disfa_short_bundle, face_video, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null, inside the test's folder
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD); the FIFO test covers special files")
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, node), "is a character device")
    assert stat.S_ISCHR(node.lstat().st_mode)


def test_input_as_output_and_same_path_twice(disfa_short_bundle, face_video, tmp_path):
    before = face_video.read_bytes()
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, face_video),
                     "would replace INPUT", "an output never replaces an input")
    assert face_video.read_bytes() == before
    out = tmp_path / "au.csv"
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, out, "--json", out),
                     "--out and --json are the same file")
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, out, "--plot", tmp_path / "." / "au.csv"),
                     "--out and --plot are the same file")
    card = disfa_short_bundle / "mdhr.json"
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, out, "--json", card), "would replace --model")
    assert json.loads(card.read_text())["format"] == 1 and not out.exists()


def test_symlink_output_is_refused_and_left_alone(disfa_short_bundle, face_video, tmp_path):
    real = tmp_path / "precious.txt"
    real.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, link), "is a symbolic link", "precious.txt")
    assert link.is_symlink() and real.read_text() == "keep me"


def test_missing_input_and_bad_folders_are_named_before_the_model(face_video, tmp_path):
    missing_bundle = tmp_path / "no_bundle"  # a model that would fail to load: the path problem comes first
    one_line_refusal(run_main, run_args(tmp_path / "missing.mp4", missing_bundle, tmp_path / "o.csv"),
                     "INPUT not found", "missing.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_refusal(run_main, run_args(face_video, missing_bundle, blocker / "sub" / "o.csv"),
                     "is not a folder", "cannot be created")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    one_line_refusal(run_main, run_args(fifo, missing_bundle, tmp_path / "o.csv"), "is a FIFO")


@pytest.mark.parametrize("threshold", ["5", "-2", "nan", "inf"])
def test_threshold_must_be_a_cosine(disfa_short_bundle, face_video, tmp_path, threshold):
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, tmp_path / "o.csv", "--threshold", threshold),
                     f"threshold {float(threshold)} is outside [-1, 1]")


def test_read_only_folder_is_named_before_any_work(face_video):
    """Root writes anywhere, so the check runs as an unprivileged user: a
    forked child of this process drops to 'nobody' and runs mdhr-run on a
    video in a temporary folder that user can read."""
    if os.geteuid() != 0:
        pytest.skip("runs the check as another user, which needs root; as a normal user a chmod 555 folder "
                    "would do, but this machine runs the tests as root")
    try:
        import pwd

        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this machine to run the check as")
    with tempfile.TemporaryDirectory() as shared:
        shared = Path(shared)
        shared.chmod(0o755)
        video = shared / "face.avi"
        shutil.copy(face_video, video)
        video.chmod(0o644)
        locked = shared / "locked"
        locked.mkdir(mode=0o555)
        code, output = as_user(nobody, lambda: CliRunner().invoke(
            run_main, [str(video), "--model", str(shared / "no_bundle"), "--out", str(locked / "o.csv")]))
        assert code == 2, output
        assert output.strip().splitlines() == [
            f"error: --out: cannot write in {locked} (permission denied or read-only); "
            "choose a writable output folder"]
        assert list(locked.iterdir()) == []


def as_user(user, invoke) -> tuple[int, str]:
    """Run ``invoke`` (a CliRunner call) in a forked child as ``user``; its
    exit code and output."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            result = invoke()
            message = f"{result.exit_code}\n{result.output}"
        except BaseException as e:  # report anything, then leave
            message = f"-1\n{e!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, _, output = data.partition("\n")
    return int(code), output


# ------------------------------------------------ mdhr-run: all or nothing


def test_failing_plot_leaves_no_output_and_keeps_the_old_csv(disfa_short_bundle, face_video, tmp_path,
                                                             monkeypatch):
    from mdhr_runtime.table import FrameTable

    out, js, png = tmp_path / "au.csv", tmp_path / "au.json", tmp_path / "au.png"
    out.write_text("the previous run's results\n")

    def disk_full(self, path, title=None):
        Path(path).write_bytes(b"\x89PNG half")
        raise MDHRError(f"cannot write {path}: no space left on device")

    monkeypatch.setattr(FrameTable, "plot_timeline", disk_full)  # the plot fails after CSV and JSON were written
    one_line_refusal(run_main, run_args(face_video, disfa_short_bundle, out, "--json", js, "--plot", png),
                     "no space left")
    assert out.read_text() == "the previous run's results\n"
    assert not js.exists() and not png.exists() and staging_in(tmp_path) == []


def test_staged_files_replace_all_targets_or_none(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with staged_files([a, None, b]) as (sa, none, sb):
            assert none is None and sa.parent == tmp_path and sa.name.startswith(".a.txt.mdhr-")
            sa.write_text("new a")
            raise RuntimeError("the second output failed")
    assert a.read_text() == "old a" and not b.exists() and staging_in(tmp_path) == []
    with staged_files([a, b]) as (sa, sb):
        sa.write_text("new a")
        sb.write_text("new b")
    assert a.read_text() == "new a" and b.read_text() == "new b" and staging_in(tmp_path) == []
    assert stat.S_IMODE(b.stat().st_mode) == 0o666 & ~umask()


def test_stale_staging_is_removed_with_a_notice_and_live_staging_kept(disfa_short_bundle, face_video, tmp_path):
    out = tmp_path / "au.csv"
    stale = tmp_path / f".au.csv.mdhr-{dead_pid()}-x1y2.part"
    stale.write_text("half a CSV from a killed run")
    live = tmp_path / f".au.csv.mdhr-{os.getpid()}-live.part"
    live.write_text("another run is writing this")
    result = CliRunner().invoke(run_main, [str(a) for a in run_args(face_video, disfa_short_bundle, out)])
    assert result.exit_code == 0, result.output
    assert f"removed {stale}: staging left by an interrupted run" in result.output
    assert not stale.exists() and live.exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask()
    notes = []
    assert remove_stale_staging(out, notes.append) == [] and notes == []


# ------------------------------------------------ mdhr-run: truncated video


def test_truncated_video_writes_its_rows_and_exits_4(disfa_short_bundle, face_video, truncated_video, tmp_path):
    """A real process, so FFmpeg's own complaints (written by C code to the
    process's stderr) are seen: only our line may be there."""
    out, js = tmp_path / "cut.csv", tmp_path / "cut.json"
    code = "from mdhr_runtime.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, str(truncated_video), "--model", str(disfa_short_bundle),
                             "--out", str(out), "--json", str(js)], capture_output=True, text=True, timeout=300)
    rows = list(csv.DictReader(open(out, newline="")))
    read = len(rows)
    assert 0 < read < 24
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if "UNTRAINED" not in line]  # the bundle is random-init
    assert lines == [f"error: read {read} of 24 frames: the file is truncated or damaged ({truncated_video}); "
                     f"the {read} rows read were written to {out}"], result.stderr
    document = json.loads(js.read_text())
    assert document["complete"] is False and document["frames_read"] == read
    assert document["frames_declared"] == 24 and len(document["frames"]) == read


def test_whole_video_is_complete(disfa_short_bundle, face_video, tmp_path):
    js = tmp_path / "whole.json"
    result = CliRunner().invoke(run_main, [str(a) for a in run_args(face_video, disfa_short_bundle,
                                                                    tmp_path / "whole.csv", "--json", js)])
    assert result.exit_code == 0, result.output
    document = json.loads(js.read_text())
    assert document["complete"] is True and document["frames_read"] == document["frames_declared"] == 24


# ------------------------------------------------------- mdhr-export


def test_export_checks_everything_before_loading(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("epoch 12: loss 0.31\nthis is not a checkpoint\n")
    one_line_refusal(export_main, ["--ckpt", text, "--out", tmp_path / "b"], "not a PyTorch checkpoint")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    line = one_line_refusal(export_main, ["--ckpt", noise, "--out", tmp_path / "b"], "not a PyTorch checkpoint")
    assert "run code" not in line
    one_line_refusal(export_main, ["--random-init", "--out", tmp_path / "b", "--frames", "1000"],
                     "--frames must be 2 to 64")
    one_line_refusal(export_main, ["--random-init", "--out", tmp_path / "b", "--batch", "0"], "--batch must be 1 to")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    one_line_refusal(export_main, ["--random-init", "--out", link], "is a symbolic link")
    one_line_refusal(export_main, ["--ckpt", tmp_path, "--out", tmp_path / "b"], "checkpoint", "is a folder")
    inside = tmp_path / "bundle"
    inside.mkdir()
    (inside / "mdhr.json").write_text("{}")
    (inside / "ckpt.pth").write_bytes(b"x")
    one_line_refusal(export_main, ["--ckpt", inside / "ckpt.pth", "--out", inside], "lies inside --out")
    assert not (tmp_path / "b").exists() and not link.exists()


def test_export_refuses_a_checkpoint_that_carries_code(tmp_path):
    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": RunsCode()}, evil)
    one_line_refusal(export_main, ["--ckpt", evil, "--out", tmp_path / "b"], "would run code", "posix.mkdir")
    assert not (tmp_path / "pwned").exists()


def test_export_removes_stale_staging_saying_so(tmp_path):
    stale = tmp_path / f".bundle.mdhr-{dead_pid()}-abcd.part"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"\0" * 1024)
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 2
    assert f"removed {stale}: staging left by an interrupted run" in result.output
    assert staging_in(tmp_path) == []


def test_sigterm_during_export_leaves_nothing(tmp_path):
    out = tmp_path / "bundle"
    code = "from mdhr_export.cli import main; main()"
    process = subprocess.Popen([sys.executable, "-c", code, "--random-init", "--dataset", "DISFA", "--backbone",
                                "resnet", "--frames", "2", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not staging_in(tmp_path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert staging_in(tmp_path), "the export never started staging"
    time.sleep(2)  # well inside the ONNX export
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "terminated; nothing was written"
    assert staging_in(tmp_path) == [] and not out.exists()


def test_bundle_and_its_files_have_the_users_permissions(disfa_short_bundle):
    assert stat.S_IMODE(disfa_short_bundle.stat().st_mode) == 0o777 & ~umask()
    for file in disfa_short_bundle.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask(), file.name


# ---------------------------------------------------- mdhr-build, -bench, -parity


def test_build_checks_the_bundle_before_the_gpu(disfa_short_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(disfa_short_bundle / "mdhr.json", bundle)
    (bundle / "model.onnx").symlink_to(disfa_short_bundle / "model.onnx")
    (bundle / "model.engine").symlink_to(tmp_path / "elsewhere.engine")
    one_line_refusal(build_main, [bundle, "--fp32"], "model.engine is a symbolic link")
    one_line_refusal(build_main, [tmp_path / "nothing"], "no such bundle folder")


def test_bench_and_parity_check_paths_before_any_backend(disfa_short_bundle, tmp_path):
    report = tmp_path / "report"
    one_line_refusal(bench_main, ["--model", disfa_short_bundle, "--json", report, "--markdown", report],
                     "--json and --markdown are the same file")
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"x")
    one_line_refusal(bench_main, ["--model", disfa_short_bundle, "--ckpt", ckpt, "--json", ckpt],
                     "would replace --ckpt")
    one_line_refusal(bench_main, ["--model", disfa_short_bundle, "--video", tmp_path / "none.mp4"],
                     "--video not found")
    one_line_refusal(parity_main, ["--model", disfa_short_bundle, "--json", tmp_path], "is a folder")
    one_line_refusal(parity_main, ["--model", tmp_path / "missing", "--json", tmp_path / "p.json"],
                     "no such bundle folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_a_damaged_card_is_named(disfa_short_bundle, face_video, tmp_path):
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    bundle = tmp_path / "edited"
    bundle.mkdir()
    (bundle / "mdhr.json").write_text(json.dumps({**card, "artifacts": "model.onnx", "input": {"shape": "big"}}))
    one_line_refusal(run_main, run_args(face_video, bundle, tmp_path / "o.csv"),
                     "damaged model card (input, artifacts not as mdhr-export writes them)")
