"""Real bundles for the tests, exported once per session (minutes on 2 cores)."""
from __future__ import annotations

from pathlib import Path

import torch

import mdhr
from golden import deterministic_init_


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
    from click.testing import CliRunner

    from mdhr_export.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
