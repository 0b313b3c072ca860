"""Paths checked before any work, outputs written all or nothing, staging
cleaned up (also after a killed run), and the user's permissions on what is
written: mdhr-run, mdhr-build, mdhr-bench and mdhr-parity.

The commands run for real (CliRunner in-process, or a forked child where
another user is part of the test)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdhr.errors import MDHRError
from mdhr_bench.cli import bench_main, parity_main
from mdhr_export.cli import build_main
from mdhr_runtime.cli.run import main as run_main
from mdhr_runtime.files.atomic import umask
from mdhr_runtime.files.outputs import remove_stale_staging, staged_files
from tests.support.refusals import as_user, dead_pid, one_line_refusal, run_args, staging_in

# -------------------------------------------------------- mdhr-run: paths first


def test_outputs_that_are_not_regular_files_are_refused(disfa_short_bundle, face_avi, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, fifo), "is a FIFO", "not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, tmp_path), "is a folder; give a file name")
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, tmp_path / "o.csv", "--json", fifo),
                     "--json", "is a FIFO")
    assert not (tmp_path / "o.csv").exists()


def test_device_node_output_is_refused(disfa_short_bundle, face_avi, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null, inside the test's folder
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD); the FIFO test covers special files")
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, node), "is a character device")
    assert stat.S_ISCHR(node.lstat().st_mode)


def test_input_as_output_and_same_path_twice(disfa_short_bundle, face_avi, tmp_path):
    before = face_avi.read_bytes()
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, face_avi),
                     "would replace INPUT", "an output never replaces an input")
    assert face_avi.read_bytes() == before
    out = tmp_path / "au.csv"
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, out, "--json", out),
                     "--out and --json are the same file")
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, out, "--plot", tmp_path / "." / "au.csv"),
                     "--out and --plot are the same file")
    card = disfa_short_bundle / "mdhr.json"
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, out, "--json", card), "would replace --model")
    assert json.loads(card.read_text())["format"] == 1 and not out.exists()


def test_symlink_output_is_refused_and_left_alone(disfa_short_bundle, face_avi, tmp_path):
    real = tmp_path / "precious.txt"
    real.write_text("keep me")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, link), "is a symbolic link", "precious.txt")
    assert link.is_symlink() and real.read_text() == "keep me"


def test_missing_input_and_bad_folders_are_named_before_the_model(face_avi, tmp_path):
    missing_bundle = tmp_path / "no_bundle"  # a model that would fail to load: the path problem comes first
    one_line_refusal(run_main, run_args(tmp_path / "missing.mp4", missing_bundle, tmp_path / "o.csv"),
                     "INPUT not found", "missing.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_refusal(run_main, run_args(face_avi, missing_bundle, blocker / "sub" / "o.csv"),
                     "is not a folder", "cannot be created")
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    one_line_refusal(run_main, run_args(fifo, missing_bundle, tmp_path / "o.csv"), "is a FIFO")


@pytest.mark.parametrize("threshold", ["5", "-2", "nan", "inf"])
def test_threshold_must_be_a_cosine(disfa_short_bundle, face_avi, tmp_path, threshold):
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, tmp_path / "o.csv", "--threshold", threshold),
                     f"threshold {float(threshold)} is outside [-1, 1]")


def test_read_only_folder_is_named_before_any_work(face_avi):
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
        shutil.copy(face_avi, video)
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


# ------------------------------------------------ mdhr-run: all or nothing


def test_failing_plot_leaves_no_output_and_keeps_the_old_csv(disfa_short_bundle, face_avi, tmp_path,
                                                             monkeypatch):
    from mdhr_runtime.results.table import FrameTable

    out, js, png = tmp_path / "au.csv", tmp_path / "au.json", tmp_path / "au.png"
    out.write_text("the previous run's results\n")

    def disk_full(self, path, title=None):
        Path(path).write_bytes(b"\x89PNG half")
        raise MDHRError(f"cannot write {path}: no space left on device")

    monkeypatch.setattr(FrameTable, "plot_timeline", disk_full)  # the plot fails after CSV and JSON were written
    one_line_refusal(run_main, run_args(face_avi, disfa_short_bundle, out, "--json", js, "--plot", png),
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


def test_stale_staging_is_removed_with_a_notice_and_live_staging_kept(disfa_short_bundle, face_avi, tmp_path):
    out = tmp_path / "au.csv"
    stale = tmp_path / f".au.csv.mdhr-{dead_pid()}-x1y2.part"
    stale.write_text("half a CSV from a killed run")
    live = tmp_path / f".au.csv.mdhr-{os.getpid()}-live.part"
    live.write_text("another run is writing this")
    result = CliRunner().invoke(run_main, [str(a) for a in run_args(face_avi, disfa_short_bundle, out)])
    assert result.exit_code == 0, result.output
    assert f"removed {stale}: staging left by an interrupted run" in result.output
    assert not stale.exists() and live.exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask()
    notes = []
    assert remove_stale_staging(out, notes.append) == [] and notes == []


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


def test_a_damaged_card_is_named(disfa_short_bundle, face_avi, tmp_path):
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    bundle = tmp_path / "edited"
    bundle.mkdir()
    (bundle / "mdhr.json").write_text(json.dumps({**card, "artifacts": "model.onnx", "input": {"shape": "big"}}))
    one_line_refusal(run_main, run_args(face_avi, bundle, tmp_path / "o.csv"),
                     "damaged model card (input, artifacts not as mdhr-export writes them)")
