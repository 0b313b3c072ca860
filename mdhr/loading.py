"""Building MDHR and loading checkpoints trained with the official code."""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping

import torch

from mdhr.aus import AU_SETS, BACKBONES, au_set
from mdhr.errors import MDHRError
from mdhr.model import MDHR

# Keys present only in one backbone's state dict.
_BACKBONE_MARKERS = {
    "resnet": "Backbone.conv1.weight",
    "swin_transformer": "Backbone.patch_embed.proj.weight",
}
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


def build_model(dataset: str = "BP4D", backbone: str = "resnet") -> MDHR:
    """MDHR with random initialisation, in eval mode; reads and downloads nothing."""
    au_set(dataset)  # validates the name
    if backbone not in BACKBONES:
        raise MDHRError(f"unknown backbone {backbone!r}: choose one of {', '.join(BACKBONES)}")
    return MDHR(dataset, backbone).eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, whatever its official layout
    (bare, wrapped as {"state_dict": ...}, with DataParallel's ``module.``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MDHRError(f"{path}: no such checkpoint file; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise MDHRError(
            f"{path}: refused to load: the checkpoint holds more than tensors and would run "
            f"code ({first_line[:160]}); re-save only the state_dict from a trusted environment") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise MDHRError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}); "
                        "is the file complete and saved with torch.save?") from None
    state = _unwrap(obj, path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _unwrap(obj, path: str) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise MDHRError(f"{path}: no model state_dict found (expected a dict of tensors, or one under "
                    f"{', '.join(repr(k) for k in _WRAPPER_KEYS)})")


def infer_config(state: Mapping[str, torch.Tensor], path: str = "checkpoint") -> tuple[str, str]:
    """(dataset, backbone) that a state dict was trained for."""
    backbones = [name for name, key in _BACKBONE_MARKERS.items() if key in state]
    sc = state.get("node_classifier.sc")
    datasets = [name for name, s in AU_SETS.items() if sc is not None and sc.shape[0] == s.num_aus]
    if len(backbones) != 1 or len(datasets) != 1:
        raise MDHRError(f"{path}: does not look like an MDHR checkpoint (no recognisable backbone "
                        "or AU classifier keys)")
    return datasets[0], backbones[0]


def load_model(path: str | os.PathLike, dataset: str | None = None, backbone: str | None = None,
               device: str | torch.device = "cpu") -> MDHR:
    """Load an official MDHR checkpoint strictly and return the model in eval
    mode on ``device``.  ``dataset`` and ``backbone`` are inferred from the
    keys when not given, and checked against them when given."""
    path = os.fspath(path)
    state = read_state_dict(path)
    found_dataset, found_backbone = infer_config(state, path)
    if dataset is not None and dataset != found_dataset:
        au_set(dataset)
        n = AU_SETS[found_dataset].num_aus
        raise MDHRError(f"{path}: checkpoint has {n} AU classifiers ({found_dataset}), "
                        f"but dataset={dataset} was asked")
    if backbone is not None and backbone != found_backbone:
        raise MDHRError(f"{path}: checkpoint was trained with backbone {found_backbone}, "
                        f"but backbone={backbone} was asked")
    model = build_model(found_dataset, found_backbone)
    _check_keys(model, state, path)
    _check_finite(state, path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _check_finite(state: Mapping[str, torch.Tensor], path: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise MDHRError(f"{path}: {len(bad)} tensors hold NaN or infinite values (first: {bad[0]}); "
                        "the checkpoint is damaged or training diverged")


def _check_keys(model: MDHR, state: Mapping[str, torch.Tensor], path: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
    if problems:
        raise MDHRError(f"{path}: does not match MDHR {model.dataset}/{model.backbone}: "
                        + "; ".join(problems))
