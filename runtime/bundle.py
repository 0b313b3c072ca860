"""The export bundle: a folder with ``mdhr.json`` (the model card) and the
artifacts it names.  Written by ``mdhr_export``, read here without torch."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from mdhr.aus import IMAGE_SIZE
from mdhr.errors import MDHRError
from mdhr_runtime.files.atomic import write_atomically

CARD_FILE = "mdhr.json"
FORMAT = 1  # bump when the card or the graph's inputs/outputs change meaning
ARTIFACT_KINDS = ("onnx", "onnx_fp16", "engine", "frame_stage", "clip_stage", "frame_stage_fp16", "clip_stage_fp16",
                  "frame_batch", "frame_stage_engine", "clip_stage_engine", "openvino_int8", "openvino_int8_weights", "weights",
                  "weights_fp16", "parity_reference")
# What ``mdhr-export --target`` writes: the CPU runners' fp32 graphs (and
# INT8), what TensorRT engines are built from (the fp16 graphs, and the fp32
# model's outputs on the parity clips to check the engines against), or both.
TARGET_ARTIFACTS = {
    "cpu": ("onnx", "frame_stage", "clip_stage", "frame_batch", "weights", "openvino_int8", "openvino_int8_weights"),
    "gpu": ("onnx_fp16", "frame_stage_fp16", "clip_stage_fp16", "weights_fp16", "parity_reference"),
}
TARGETS = (*TARGET_ARTIFACTS, "all")
DEFAULT_TARGET = "all"


@dataclass(frozen=True)
class Bundle:
    root: Path
    card: dict

    @property
    def dataset(self) -> str:
        return self.card["dataset"]

    @property
    def backbone(self) -> str:
        return self.card["backbone"]

    @property
    def au_names(self) -> list[str]:
        return list(self.card["au_names"])

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card["input"]["shape"])

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def frames(self) -> int:
        return self.input_shape[1]

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.card["input"]["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.card["input"]["std"])

    @property
    def untrained(self) -> bool:
        return bool(self.card.get("untrained"))

    def artifact(self, kind: str) -> Path | None:
        """Absolute path of an artifact, or None when the bundle has none."""
        name = self.card["artifacts"].get(kind)
        return None if name is None else self.root / name

    def export_hint(self, kind: str) -> str:
        """Which ``mdhr-export --target`` writes the artifact ``kind`` this
        bundle lacks, as the end of a one-line message."""
        target = next((t for t, kinds in TARGET_ARTIFACTS.items() if kind in kinds), DEFAULT_TARGET)
        return (f"this bundle was exported with --target {self.card.get('target', DEFAULT_TARGET)}; export it with "
                f"mdhr-export ... --target {target} (or all)" + (" --fp16" if target == "gpu" else ""))


REQUIRED = ("format", "dataset", "backbone", "au_names", "threshold", "input", "outputs", "artifacts")


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle folder (or its mdhr.json)."""
    root = Path(path)
    if root.name == CARD_FILE:
        root = root.parent
    card_path = root / CARD_FILE
    if not root.is_dir():
        raise MDHRError(f"{root}: no such bundle folder; create one with mdhr-export")
    if not card_path.is_file():
        raise MDHRError(f"{root}: not an MDHR bundle (no {CARD_FILE}); create one with mdhr-export")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MDHRError(f"{card_path}: damaged model card ({e}); export the bundle again") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else None
        raise MDHRError(f"{root}: bundle format {found!r} is not supported by this runtime (expects "
                        f"{FORMAT}); export it again with the matching mdhr-toolkit version")
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise MDHRError(f"{card_path}: incomplete model card (missing {', '.join(missing)}); "
                        "export the bundle again")
    _check_types(card, card_path)
    _check_supported(card, card_path)
    bundle = Bundle(root, card)
    graphs = [kind for kind in ("onnx", "onnx_fp16") if bundle.artifact(kind) is not None]
    missing = [card["artifacts"][kind] for kind in graphs if not bundle.artifact(kind).is_file()]
    if not graphs or missing:
        raise MDHRError(f"{root}: incomplete bundle: {', '.join(missing) or 'no model graph'} missing; "
                        "export the bundle again")
    return bundle


def _check_types(card: dict, card_path: Path) -> None:
    """The fields the runtime reads have the types it reads them as, so a
    hand-edited or damaged card is named, not a crash later."""
    def is_numbers(value, length=None, kind=(int, float)):
        return (isinstance(value, list) and (length is None or len(value) == length)
                and all(isinstance(v, kind) and not isinstance(v, bool) for v in value))

    model_input = card["input"]
    checks = {
        "au_names": isinstance(card["au_names"], list) and card["au_names"]
        and all(isinstance(n, str) for n in card["au_names"]),
        "threshold": isinstance(card["threshold"], (int, float)) and -1 <= card["threshold"] <= 1,
        "input": isinstance(model_input, dict) and is_numbers(model_input.get("shape"), 5, int)
        and all(d > 0 for d in model_input["shape"]) and is_numbers(model_input.get("mean"), 3)
        and is_numbers(model_input.get("std"), 3),
        "outputs": isinstance(card["outputs"], list),
        "artifacts": isinstance(card["artifacts"], dict)
        and all(v is None or isinstance(v, str) for v in card["artifacts"].values()),
    }
    wrong = [field for field, ok in checks.items() if not ok]
    if wrong:
        raise MDHRError(f"{card_path}: damaged model card ({', '.join(wrong)} not as mdhr-export writes them); "
                        "export the bundle again")


def _check_supported(card: dict, card_path: Path) -> None:
    """Values of the right types that this runtime still cannot honour are
    refused, not ignored: faces are cropped to 3 x 224 x 224 RGB, and the
    crops normalised with the card's own mean and std."""
    shape, mean, std = card["input"]["shape"], card["input"]["mean"], card["input"]["std"]
    names = card["au_names"]
    problem = None
    if tuple(shape[2:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        problem = (f"input shape {shape} (this runtime feeds RGB face crops of {IMAGE_SIZE}x{IMAGE_SIZE}: "
                   f"[B, T, 3, {IMAGE_SIZE}, {IMAGE_SIZE}])")
    elif not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        problem = f"input mean {mean} / std {std} (finite numbers, every std above 0)"
    elif len(set(names)) != len(names):
        problem = f"au_names {names} (each AU once)"
    if problem:
        raise MDHRError(f"{card_path}: this runtime does not support the card's {problem}; "
                        "export the bundle again with this mdhr-toolkit")


def write_card(folder: str | Path, card: dict) -> Path:
    """Save ``card`` as the folder's mdhr.json (atomically)."""
    return write_atomically(Path(folder) / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode())
