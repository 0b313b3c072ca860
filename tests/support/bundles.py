"""Real bundles for the tests, exported once per session (minutes on 2 cores)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import mdhr
from tests.support.golden import deterministic_init_


def golden_checkpoint(folder: Path, dataset: str = "BP4D", backbone: str = "resnet") -> Path:
    """A checkpoint in the official wrapped DataParallel layout holding the
    golden recipe's weights, so exported outputs can be checked against the
    official model's golden outputs."""
    model = deterministic_init_(mdhr.build_model(dataset, backbone))
    path = folder / f"{dataset}_{backbone}_golden.pth"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def export(args: list[str]) -> None:
    """mdhr-export in a process of its own: an export of the full model takes
    gigabytes, which a process returns only when it ends, and the test
    session would otherwise keep the largest export's memory to its end."""
    command = [sys.executable, "-c", "from mdhr_export.cli import main; main()", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
