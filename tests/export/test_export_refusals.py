"""mdhr-export checks everything before loading a model, tells a file that
is no checkpoint from one that carries code, removes staging left by a
killed export, and leaves nothing behind when terminated (a real process
and a real SIGTERM)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from mdhr_export.cli import main as export_main
from tests.support.refusals import dead_pid, one_line_refusal, staging_in


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
