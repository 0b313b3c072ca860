"""The reference recipe of shared/reference/README.md: deterministic weights
and input under which the official model produced tests/data/golden_*.npz."""
from __future__ import annotations

import zlib

import numpy as np
import torch

from tests.support import DATA

CONFIGS = [("BP4D", "resnet"), ("BP4D", "swin_transformer"),
           ("DISFA", "resnet"), ("DISFA", "swin_transformer")]


def reference_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    last = key.rsplit(".", 1)[-1]
    if last == "running_var":
        value = 0.5 + rng.random(shape)
    elif last == "running_mean":
        value = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1:
        value = (1.0 if last == "weight" else 0.0) + 0.1 * rng.standard_normal(shape)
    else:
        value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    return value.astype(np.float32)


def deterministic_init_(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or key.endswith("attn_mask"):
                continue
            tensor.copy_(torch.from_numpy(reference_value(key, tuple(tensor.shape))))
    return model


def reference_input(batch: int = 1, frames: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, frames, 3, 224, 224), dtype=np.float32)


def golden(dataset: str, backbone: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"golden_{dataset}_{backbone}_seed0_b1.npz") as z:
        return dict(z)
