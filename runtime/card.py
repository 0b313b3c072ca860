"""The model card, ``mdhr.json``, as one typed record: what a bundle is and
what its files are.  ``mdhr_export`` writes it (``Card.to_json``), the
runtime reads it (``Card.from_json``); torch-free.

A card is untrusted data: ``from_json`` checks every field the toolkit
reads for its type (a bool is not a number), finiteness, range and meaning
before anything uses it, and refuses the first wrong one in one line naming
the field.  Names that become paths (artifact file names) are plain file
names inside the bundle; names that become model names or config text
(dataset, backbone, tensor names) come from the known lists or are
identifiers.  Reports the runtime never acts on (parity figures, timings)
are kept as they are, in ``reports``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from mdhr.aus import AU_SETS, BACKBONES, IMAGE_SIZE

CARD_FILE = "mdhr.json"
FORMAT = 2  # bump when the card or the graph's inputs/outputs change meaning
ARTIFACT_KINDS = ("onnx", "onnx_fp16", "engine", "frame_stage", "clip_stage", "frame_stage_fp16", "clip_stage_fp16",
                  "frame_batch", "clip_centre", "frame_stage_engine", "clip_stage_engine", "openvino_int8", "openvino_int8_weights", "weights",
                  "weights_fp16", "parity_reference")
# What ``mdhr-export --target`` writes: the CPU runners' fp32 graphs (and
# INT8), what TensorRT engines are built from (the fp16 graphs, and the fp32
# model's outputs on the parity clips to check the engines against), or both.
TARGET_ARTIFACTS = {
    "cpu": ("onnx", "frame_stage", "clip_stage", "frame_batch", "clip_centre", "weights", "openvino_int8", "openvino_int8_weights"),
    "gpu": ("onnx_fp16", "frame_stage_fp16", "clip_stage_fp16", "weights_fp16", "parity_reference"),
}
TARGETS = (*TARGET_ARTIFACTS, "all")
DEFAULT_TARGET = "all"
ISLANDS = "reduced_precision_islands"
# The parts of the model whose first nodes the card names for reduced
# precision to keep float32 (the export finds both).
ISLAND_PARTS = ("frame_differences", "region_modelling")
# The layer groups the reduced-precision searches name (runtime/backends/layer_groups.py):
# a backbone stage, a top-level module of the official model, or an island part.
LAYER_GROUP_MODULES = ("global_linear", "MFD", "LRM", "CRM", "TCN", "node_classifier")
LAYER_GROUP = re.compile(r"Backbone\.[A-Za-z_][A-Za-z0-9_]{0,63}|" + "|".join((*LAYER_GROUP_MODULES, *ISLAND_PARTS)))
ENGINE_PRECISIONS = ("fp32", "fp16")
# The frame stage's inputs for the previous frame's backbone taps (the stage runner's names too).
PREVIOUS_TAPS = ("previous_tap1", "previous_tap2", "previous_tap3", "previous_tap4")
# The export's limits (mdhr_export.pipeline): a card beyond them was not written by it.
MAX_BATCH, MAX_FRAMES = 16, 64
# Artifacts of a bundle: the largest real one (Swin-B's fp32 weights) is
# 0.45 GB; a size beyond this is no export's.
MAX_ARTIFACT_BYTES = 1 << 34
# A stage tensor the runtime allocates from the card's shapes (checked
# against the graph when it opens): the largest real one, ResNet-50's first
# tap (256 x 56 x 56), is 0.8M floats.
MAX_TAP_ELEMENTS = 1 << 24
MAX_NAME_BYTES = 255  # one file name, as file systems allow
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Keys the card holds beside the typed ones; written back unchanged.
TYPED_KEYS = ("format", "dataset", "backbone", "au_names", "threshold", "input", "outputs", "regions", "untrained",
              "target", "source", "artifacts", "artifact_bytes", "artifact_sha256", ISLANDS, "stages",
              "engine_build", "bf16", "parity", "int8", "timings_s")
REQUIRED = ("format", "dataset", "backbone", "au_names", "threshold", "input", "outputs", "artifacts",
            "artifact_bytes", "artifact_sha256")


class CardError(ValueError):
    """One wrong field: ``field`` (a dotted path) and what is wrong with it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, int, int, int, int]  # [B, T, 3, 224, 224]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "RGB, pixel/255 then (x - mean) / std"

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def frames(self) -> int:
        return self.shape[1]

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "layout": self.layout, "mean": list(self.mean),
                "std": list(self.std)}


@dataclass(frozen=True)
class Artifact:
    """One file of the bundle: its plain name, size and sha256."""
    kind: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    checkpoint_sha256: str | None
    torch: str | None = None
    onnx: str | None = None
    opset: int = 18

    def to_json(self) -> dict:
        return {"checkpoint_sha256": self.checkpoint_sha256, "torch": self.torch, "onnx": self.onnx,
                "opset": self.opset}


@dataclass(frozen=True)
class FrameBatch:
    """``stages.frame_batch``: frames per call of the hop-per-call frame
    stage, whether it gave the one-frame graph's bits at export (where not,
    the outputs that differed), and how many times faster it took a hop
    than one frame per call on the exporting machine (the runtime calls it
    only where faster; None: not measured)."""
    frames: int
    bit_identical: bool
    differing_outputs: tuple[str, ...] = ()
    speedup: float | None = None

    def to_json(self) -> dict:
        return _faster_graph_json({"frames": self.frames}, self)


@dataclass(frozen=True)
class ClipCentre:
    """``stages.clip_centre``: the window position whose outputs the
    centre-only clip stage gives (what a centred window of hop 1 scores),
    whether they were the clip stage's bits there at export (where not, the
    outputs that differed), and how many times faster a call was than the
    clip stage's on the exporting machine (the runtime calls it only where
    faster; None: not measured)."""
    position: int
    bit_identical: bool
    differing_outputs: tuple[str, ...] = ()
    speedup: float | None = None

    def to_json(self) -> dict:
        return _faster_graph_json({"position": self.position}, self)


def _faster_graph_json(count: dict, account: FrameBatch | ClipCentre) -> dict:
    """A faster graph's account as the card holds it: its count, bit
    identity, and where there are any, the differing outputs and the speed-up."""
    data = {**count, "bit_identical": account.bit_identical}
    if account.differing_outputs:
        data["differing_outputs"] = list(account.differing_outputs)
    if account.speedup is not None:
        data["speedup"] = account.speedup
    return data


@dataclass(frozen=True)
class Stages:
    """``stages``: the frame and clip stage graphs.  The stage runner reads
    the tap shapes, the clip outputs and the frame batch; the export reads
    the precision-sensitive nodes."""
    tap_shapes: tuple[tuple[int, ...], ...]  # the frame stage's previous taps, batch first
    clip_outputs: tuple[str, ...]
    cached_bytes_per_frame: int | None
    described: Mapping[str, Any]  # the graphs' inputs and outputs, the cut: written back unchanged
    frame_differences: tuple[str, ...] | None = None  # the frame stage's frame-difference nodes
    frame_batch: FrameBatch | None = None
    fp32_nodes: tuple[str, ...] | None = None  # the nodes the FP16 frame stage keeps float32
    clip_centre: ClipCentre | None = None

    @classmethod
    def from_json(cls, value: Any, outputs: tuple[str, ...]) -> "Stages":
        """The stages of the card whose model outputs are ``outputs``."""
        return _stages(value, outputs)

    def to_json(self) -> dict:
        data = _plain(self.described)
        if self.frame_differences is not None:
            data["frame_differences"] = list(self.frame_differences)
        if self.frame_batch is not None:
            data["frame_batch"] = self.frame_batch.to_json()
        if self.fp32_nodes is not None:
            data["fp32_nodes"] = list(self.fp32_nodes)
        if self.clip_centre is not None:
            data["clip_centre"] = self.clip_centre.to_json()
        return data


@dataclass(frozen=True)
class PrecisionChoice:
    """``int8`` and ``bf16``: the layer groups the export's search kept
    float32 (None: no search ran, the runner keeps its default islands) and
    whether the chosen candidate passed the search's gate (None: no search)."""
    kept_fp32: tuple[str, ...] | None
    described: Mapping[str, Any]  # the search's frontier and timings: written back unchanged
    search_passed: bool | None = None

    @classmethod
    def from_json(cls, value: Any, where: str) -> "PrecisionChoice":
        return _precision_choice(value, where)

    def to_json(self) -> dict:
        return _plain(self.described)


@dataclass(frozen=True)
class EngineBuild:
    """``engine_build``: how ``mdhr-build`` made the TensorRT engine."""
    precision: str
    described: Mapping[str, Any]  # TensorRT version, GPU, build time: written back unchanged
    tensorrt: str | None = None
    gpu: str | None = None
    build_seconds: float | None = None

    @classmethod
    def from_json(cls, value: Any) -> "EngineBuild":
        return _engine_build(value)

    def to_json(self) -> dict:
        return _plain(self.described)

    def get(self, key: str, default=None):
        return self.described.get(key, default)


@dataclass(frozen=True)
class Agreement:
    """One agreement report (``mdhr_export.parity``): the figures the
    commands print; the whole report is in the ``Parity`` it belongs to."""
    au_max_abs_error: float | None = None
    au_decision_agreement: float | None = None
    median_decision_agreement: float | None = None
    region_argmax_agreement: float | None = None


@dataclass(frozen=True)
class Gate:
    """One reduced-precision CPU runner's agreement gate at export: measured
    (or skipped, and why) and passed or not."""
    measured: bool
    passed: bool
    reason: str | None
    described: Mapping[str, Any]  # what was measured: written back unchanged


@dataclass(frozen=True)
class Parity:
    """``parity``: every agreement check the export and ``mdhr-build``
    measured.  ``fp32``: the fp32 ONNX against PyTorch; ``fp16``: the FP16
    graph's CPU estimate; ``tensorrt``: the engine; ``gates``: the
    reduced-precision CPU runners (``backends/gates.py`` acts on them)."""
    described: Mapping[str, Any]  # the whole section as written
    fp32: Agreement | None = None
    fp16: Agreement | None = None
    tensorrt: Agreement | None = None
    gates: Mapping[str, Gate] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> "Parity":
        return _parity(value)

    def to_json(self) -> dict:
        return _plain(self.described)


@dataclass(frozen=True)
class Card:
    dataset: str
    backbone: str
    au_names: tuple[str, ...]
    threshold: float
    input: InputSpec
    outputs: tuple[str, ...]
    regions: tuple[tuple[str, int], ...]
    untrained: bool
    target: str
    source: Source
    artifacts: Mapping[str, Artifact]  # kind -> file; kinds the bundle lacks are absent
    islands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stages: Stages | None = None
    engine_build: EngineBuild | None = None
    bf16: PrecisionChoice | None = None
    parity: Parity | None = None
    int8: PrecisionChoice | None = None
    timings: Mapping[str, float] | None = None  # seconds per export step
    reports: Mapping[str, Any] = field(default_factory=dict)  # fp16, fp32_nodes, anything else: data only
    format: int = FORMAT

    @classmethod
    def from_json(cls, data: Any) -> "Card":
        """The card of a parsed ``mdhr.json``; raises CardError naming the
        first wrong field."""
        if not isinstance(data, dict):
            raise CardError("card", f"is {type(data).__name__}, not an object")
        if type(data.get("format")) is not int or data["format"] != FORMAT:
            raise CardError("format", f"{data.get('format')!r} is not this runtime's bundle format ({FORMAT})")
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise CardError(missing[0], "missing")
        identity = _identity(data)
        reports = {key: value for key, value in data.items() if key not in TYPED_KEYS}
        artifacts = _artifacts(data)
        islands = _islands(data.get(ISLANDS))
        stages = _stages(data.get("stages"), identity["outputs"])
        for kind, account, of in (("frame_batch", stages and stages.frame_batch, "frame stage"),
                                  ("clip_centre", stages and stages.clip_centre, "clip stage")):
            if kind in artifacts and not (account and account.bit_identical):
                raise CardError(f"stages.{kind}", f"does not say the {kind} graph it names gives the {of}'s bits "
                                                  "(bit_identical: true)")
        return cls(
            **identity, artifacts=MappingProxyType(artifacts), islands=MappingProxyType(islands), stages=stages,
            engine_build=_engine_build(data.get("engine_build")), bf16=_precision_choice(data.get("bf16"), "bf16"),
            parity=_parity(data.get("parity")), int8=_precision_choice(data.get("int8"), "int8"),
            timings=_timings(data.get("timings_s")), reports=MappingProxyType(_checked_reports(reports)))

    def identity(self) -> dict:
        """What the card says the model is, as ``mdhr.json`` holds it: the
        fields known before any file is written (the graphs carry them as
        metadata)."""
        return {
            "format": self.format, "dataset": self.dataset, "backbone": self.backbone,
            "au_names": list(self.au_names), "threshold": self.threshold, "input": self.input.to_json(),
            "outputs": list(self.outputs), "regions": dict(self.regions), "untrained": self.untrained,
            "target": self.target, "source": self.source.to_json()}

    def to_json(self) -> dict:
        """The card as ``mdhr.json`` holds it (every kind listed, ``None``
        where the bundle has none)."""
        data = {
            **self.identity(),
            "artifacts": {kind: (self.artifacts[kind].name if kind in self.artifacts else None)
                          for kind in ARTIFACT_KINDS},
            "artifact_bytes": {kind: a.size for kind, a in self.artifacts.items()},
            "artifact_sha256": {kind: a.sha256 for kind, a in self.artifacts.items()},
        }
        if self.islands:
            data[ISLANDS] = {part: list(nodes) for part, nodes in self.islands.items()}
        sections = (("stages", self.stages), ("engine_build", self.engine_build), ("bf16", self.bf16),
                    ("parity", self.parity))
        data.update((key, section.to_json()) for key, section in sections if section is not None)
        data.update(_plain(self.reports))
        if self.int8 is not None:
            data["int8"] = self.int8.to_json()
        if self.timings is not None:
            data["timings_s"] = dict(self.timings)
        return data

    def with_checks(self, **entries: Any) -> "Card":
        """This card with agreement reports added to (or replaced in) its ``parity``."""
        return replace(self, parity=_parity({**(self.parity.to_json() if self.parity else {}), **entries}))

    def with_reports(self, **entries: Any) -> "Card":
        """This card with data-only reports (``fp16``, ``fp32_nodes``) added or replaced."""
        return replace(self, reports=MappingProxyType(_checked_reports({**_plain(self.reports), **entries})))

    def report(self, *keys: str) -> Any:
        """A nested entry of the card's reports, parity and searches
        (``card.report("parity", "fp16")``), None where absent."""
        value: Any = {**self.reports, "parity": self.parity and self.parity.described,
                      "int8": self.int8 and self.int8.described}
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def output_shapes(self, batch: int | None = None, frames: int | None = None) -> dict[str, tuple[int, ...]]:
        """Each output's shape as the graph must give it: [B, T, AUs] scores
        and [B, T, classes] per region (the card's own B and T by default)."""
        lead = (self.input.batch if batch is None else batch, self.input.frames if frames is None else frames)
        sizes = (len(self.au_names), *(size for _, size in self.regions))
        return {name: (*lead, size) for name, size in zip(self.outputs, sizes)}


def _identity(data: dict) -> dict:
    """The fields saying what the model is (``Card.identity``), checked."""
    dataset = _choice(data["dataset"], "dataset", tuple(AU_SETS))
    aus = AU_SETS[dataset]
    au_names = tuple(_strings(data["au_names"], "au_names"))
    if au_names != aus.au_names:
        raise CardError("au_names", f"{list(au_names)} are not {dataset}'s AUs {list(aus.au_names)}")
    regions = _regions(data.get("regions"), aus)
    outputs = tuple(_strings(data["outputs"], "outputs"))
    expected = ("au_scores", *(f"region_{name}" for name, _ in regions))
    if outputs != expected:
        raise CardError("outputs", f"{list(outputs)} are not the model's outputs {list(expected)}")
    untrained = _bool(data.get("untrained", False), "untrained")
    return {"dataset": dataset, "backbone": _choice(data["backbone"], "backbone", BACKBONES),
            "au_names": au_names, "threshold": _number(data["threshold"], "threshold", -1, 1),
            "input": _input(data["input"]), "outputs": outputs, "regions": regions, "untrained": untrained,
            "target": _choice(data.get("target", DEFAULT_TARGET), "target", TARGETS),
            "source": _source(data.get("source"), untrained), "format": data["format"]}


def plain_file_name(name: Any, where: str) -> str:
    """``name`` as a file name inside a folder: one component, no way out."""
    if not isinstance(name, str):
        raise CardError(where, f"is {type(name).__name__}, not a file name")
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or ":" in name:
        raise CardError(where, f"{name[:80]!r} is not a plain file name inside the bundle")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES or name == CARD_FILE:
        raise CardError(where, f"{name[:80]!r} is not a plain file name inside the bundle")
    return name


def _type_name(value: Any) -> str:
    return "a bool" if isinstance(value, bool) else type(value).__name__


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(where, f"is {_type_name(value)}, not a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise CardError(where, f"{value!r} is not a finite number in {low:g}..{high:g}")
    return float(value)


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise CardError(where, f"is {_type_name(value)}, not an integer")
    if not low <= value <= high:
        raise CardError(where, f"{value} is not in {low}..{high}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise CardError(where, f"is {_type_name(value)}, not true or false")
    return value


def _text(value: Any, where: str, pattern: re.Pattern | None = None, limit: int = 200) -> str:
    if not isinstance(value, str):
        raise CardError(where, f"is {_type_name(value)}, not text")
    if len(value) > limit or "\0" in value or (pattern is not None and not pattern.fullmatch(value)):
        raise CardError(where, f"{value[:80]!r} is not a valid value here")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        shown = repr(value[:80]) if isinstance(value, str) else _type_name(value)
        raise CardError(where, f"{shown} is not one of {', '.join(choices)}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise CardError(where, f"is {_type_name(value)}, not a list of names")
    return [_text(item, f"{where}[{i}]", IDENTIFIER) for i, item in enumerate(value)]


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise CardError(where, f"is {_type_name(value)}, not an object")
    return value


def _input(value: Any) -> InputSpec:
    value = _object(value, "input")
    shape = value.get("shape")
    if not isinstance(shape, list) or len(shape) != 5:
        raise CardError("input.shape", f"{shape!r} is not [batch, frames, 3, {IMAGE_SIZE}, {IMAGE_SIZE}]")
    limits = ((1, MAX_BATCH), (2, MAX_FRAMES), (3, 3), (IMAGE_SIZE, IMAGE_SIZE), (IMAGE_SIZE, IMAGE_SIZE))
    dims = tuple(_integer(d, f"input.shape[{i}]", *limits[i]) for i, d in enumerate(shape))
    mean = _triple(value.get("mean"), "input.mean", 0, 1)
    std = _triple(value.get("std"), "input.std", 1e-3, 1)
    name = _text(value.get("name", "clips"), "input.name", IDENTIFIER)
    layout = _text(value.get("layout", InputSpec.layout), "input.layout")
    return InputSpec(name, dims, mean, std, layout)


def _triple(value: Any, where: str, low: float, high: float) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise CardError(where, f"is {_type_name(value)}, not three numbers (one per RGB channel)")
    return tuple(_number(v, f"{where}[{i}]", low, high) for i, v in enumerate(value))


def _regions(value: Any, aus) -> tuple[tuple[str, int], ...]:
    expected = tuple((region.name, region.num_classes) for region in aus.regions)
    if value is None:
        return expected
    value = _object(value, "regions")
    for name, size in value.items():
        _integer(size, f"regions.{str(name)[:40]}", 1, 64)
    found = tuple(value.items())
    if found != expected:
        raise CardError("regions", f"{str(value)[:120]} are not {aus.dataset}'s regions {dict(expected)}")
    return found


def _source(value: Any, untrained: bool) -> Source:
    value = _object(value if value is not None else {"checkpoint_sha256": None}, "source")
    digest = value.get("checkpoint_sha256")
    if digest is not None:
        _text(digest, "source.checkpoint_sha256", SHA256_HEX)
    if (digest is None) != untrained:
        raise CardError("source.checkpoint_sha256", "disagrees with untrained (a trained bundle names its "
                        "checkpoint's sha256, an untrained one none)")
    versions = {key: None if value.get(key) is None else _text(value[key], f"source.{key}", limit=64)
                for key in ("torch", "onnx")}
    return Source(digest, **versions, opset=_integer(value.get("opset", 18), "source.opset", 7, 64))


def _artifacts(data: dict) -> dict[str, Artifact]:
    names = _object(data["artifacts"], "artifacts")
    sizes = _object(data["artifact_bytes"], "artifact_bytes")
    digests = _object(data["artifact_sha256"], "artifact_sha256")
    found: dict[str, Artifact] = {}
    for kind, name in names.items():
        _choice(kind, "artifacts", ARTIFACT_KINDS)
        if name is None:
            continue
        name = plain_file_name(name, f"artifacts.{kind}")
        if name in (a.name for a in found.values()):
            raise CardError(f"artifacts.{kind}", f"{name!r} is named by another kind too")
        if kind not in sizes:
            raise CardError(f"artifact_bytes.{kind}", "missing")
        if kind not in digests:
            raise CardError(f"artifact_sha256.{kind}", "missing")
        size = _integer(sizes[kind], f"artifact_bytes.{kind}", 0, MAX_ARTIFACT_BYTES)
        found[kind] = Artifact(kind, name, size, _text(digests[kind], f"artifact_sha256.{kind}", SHA256_HEX))
    if not {"onnx", "onnx_fp16"} & found.keys():
        raise CardError("artifacts", "names no model graph (onnx or onnx_fp16)")
    return found


def _islands(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    value = _object(value, ISLANDS)
    if sorted(value) != sorted(ISLAND_PARTS):
        raise CardError(ISLANDS, f"names the parts {sorted(value)[:4]}, not {', '.join(ISLAND_PARTS)}")
    islands = {}
    for part in ISLAND_PARTS:
        nodes = _list(value[part], f"{ISLANDS}.{part}")
        if not nodes:
            raise CardError(f"{ISLANDS}.{part}", "names no node")
        islands[part] = tuple(_text(node, f"{ISLANDS}.{part}[{i}]", limit=400) for i, node in enumerate(nodes))
    return islands


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise CardError(where, f"is {_type_name(value)}, not a list")
    return value


def _stages(value: Any, outputs: tuple[str, ...]) -> Stages | None:
    if value is None:
        return None
    value = _object(value, "stages")
    inputs = _object(_object(_object(value.get("frame_stage"), "stages.frame_stage").get("inputs"),
                             "stages.frame_stage.inputs"), "stages.frame_stage.inputs")
    shapes = []
    for name in PREVIOUS_TAPS:  # allocated by the runtime: bounded here, equal to the graph's when it opens
        where = f"stages.frame_stage.inputs.{name}"
        dims = tuple(_integer(d, f"{where}[{i}]", 1, 4096) for i, d in enumerate(_list(inputs.get(name), where)))
        if len(dims) != 4 or dims[0] != 1 or math.prod(dims) > MAX_TAP_ELEMENTS:
            raise CardError(where, f"{list(dims)} is no tap shape of one frame ([1, C, H, W], at most "
                                   f"{MAX_TAP_ELEMENTS} values)")
        shapes.append(dims)
    clip = _object(value.get("clip_stage"), "stages.clip_stage")
    clip_outputs = tuple(_strings(clip.get("outputs"), "stages.clip_stage.outputs"))
    if clip_outputs != outputs:
        raise CardError("stages.clip_stage.outputs", f"{list(clip_outputs)} are not the model's outputs")
    cached = value.get("cached_bytes_per_frame")
    cached = None if cached is None else _integer(cached, "stages.cached_bytes_per_frame", 0, MAX_ARTIFACT_BYTES)
    typed = ("frame_differences", "frame_batch", "fp32_nodes", "clip_centre")
    described = _checked_reports({k: v for k, v in value.items() if k not in typed}, "stages", 1)
    return Stages(tuple(shapes), clip_outputs, cached, MappingProxyType(described),
                  _nodes(value.get("frame_differences"), "stages.frame_differences"),
                  _faster_graph(value.get("frame_batch"), "frame_batch", FrameBatch, "frames", (1, MAX_FRAMES)),
                  _nodes(value.get("fp32_nodes"), "stages.fp32_nodes"),
                  _faster_graph(value.get("clip_centre"), "clip_centre", ClipCentre, "position", (0, MAX_FRAMES - 1)))


def _nodes(value: Any, where: str) -> tuple[str, ...] | None:
    """Graph node names (matched against the graph where used)."""
    if value is None:
        return None
    return tuple(_text(node, f"{where}[{i}]", limit=400) for i, node in enumerate(_list(value, where)))


def _faster_graph(value: Any, kind: str, record: type, count: str, bounds: tuple[int, int]):
    """``stages.frame_batch`` or ``stages.clip_centre``: its ``count`` (frames
    per call, or a window position) within ``bounds``, bit identity and speed-up."""
    if value is None:
        return None
    where = f"stages.{kind}"
    value = _object(value, where)
    differing = value.get("differing_outputs")
    differing = () if differing is None else tuple(_strings(differing, f"{where}.differing_outputs"))
    speedup = value.get("speedup")
    return record(_integer(value.get(count), f"{where}.{count}", *bounds),
                  _bool(value.get("bit_identical"), f"{where}.bit_identical"), differing,
                  None if speedup is None else _number(speedup, f"{where}.speedup", 0.0, 1000.0))


def _precision_choice(value: Any, where: str) -> PrecisionChoice | None:
    if value is None:
        return None
    value = _object(value, where)
    kept = value.get("kept_fp32")
    if kept is not None:
        kept = tuple(_text(g, f"{where}.kept_fp32[{i}]", LAYER_GROUP)
                     for i, g in enumerate(_list(kept, f"{where}.kept_fp32")))
    search = value.get("search")
    passed = None if search is None else _object(search, f"{where}.search").get("passed")
    passed = None if passed is None else _bool(passed, f"{where}.search.passed")
    return PrecisionChoice(kept, MappingProxyType(_checked_reports(value, where, 1)), passed)


def _engine_build(value: Any) -> EngineBuild | None:
    if value is None:
        return None
    value = _object(value, "engine_build")
    precision = _choice(value.get("precision"), "engine_build.precision", ENGINE_PRECISIONS)
    versions = {key: None if value.get(key) is None else _text(value[key], f"engine_build.{key}")
                for key in ("tensorrt", "gpu")}
    seconds = value.get("build_seconds")
    seconds = None if seconds is None else _number(seconds, "engine_build.build_seconds", 0, 1e7)
    return EngineBuild(precision, MappingProxyType(_checked_reports(value, "engine_build", 1)), **versions,
                       build_seconds=seconds)


AGREEMENT_FIGURES = {"au_max_abs_error": math.inf, "au_decision_agreement": 1, "median_decision_agreement": 1,
                     "region_argmax_agreement": 1}  # each figure's upper bound


def _agreement(value: Any, where: str) -> Agreement | None:
    if value is None:
        return None
    value = _object(value, where)
    return Agreement(**{key: None if value.get(key) is None else _number(value[key], f"{where}.{key}", 0, high)
                        for key, high in AGREEMENT_FIGURES.items()})


def _parity(value: Any) -> Parity | None:
    if value is None:
        return None
    value = _object(value, "parity")
    _check_gates(value)
    described = _checked_reports(value, "parity", 1)
    fp16 = value.get("fp16")
    fp16 = None if fp16 is None else _object(fp16, "parity.fp16").get("estimate_cpu")
    runners = (described.get("reduced_precision") or {}).get("runners") or {}
    gates = {backend: Gate(entry.get("status") == "measured", entry.get("passed", False) is True,
                           _optional_text(entry.get("reason"), f"parity.reduced_precision.runners.{backend}.reason"),
                           MappingProxyType(entry))
             for backend, entry in runners.items()}  # their fields checked by _check_gates
    return Parity(MappingProxyType(described), fp32=_agreement(value.get("onnxruntime_fp32_cpu"),
                                                                "parity.onnxruntime_fp32_cpu"),
                  fp16=_agreement(fp16, "parity.fp16.estimate_cpu"),
                  tensorrt=_agreement(value.get("tensorrt"), "parity.tensorrt"), gates=MappingProxyType(gates))


def _optional_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where, limit=2000)


def _timings(value: Any) -> Mapping[str, float] | None:
    if value is None:
        return None
    value = _object(value, "timings_s")
    return MappingProxyType({str(step): _number(seconds, f"timings_s.{str(step)[:40]}", 0, 1e9)
                             for step, seconds in value.items()})


def _checked_reports(value: Any, where: str = "card", depth: int = 0) -> Any:
    """Reports are data: JSON values, nested at most a few levels.  The
    reduced-precision gates, which ``auto`` acts on, are checked in full."""
    if depth > 12:
        raise CardError(where, "is nested too deeply")
    if isinstance(value, dict):
        return {str(k): _checked_reports(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # a writer's tuple is written, and read back, as a list
        return [_checked_reports(v, f"{where}[]", depth + 1) for v in value]
    return value


GATE_FIELDS = {"passed": "bool", "frames": "count", "clips": "count", "median_decision_agreement": "fraction",
               "region_argmax_agreement": "fraction", "rank_correlation_min": "correlation"}


def _check_gates(parity: dict) -> None:
    """``parity.reduced_precision.runners``: per gated backend, whether it
    passed and what was measured (``backends/gates.py`` acts on it)."""
    reduced = parity.get("reduced_precision")
    if reduced is None:
        return
    runners = _object(_object(reduced, "parity.reduced_precision").get("runners", {}),
                      "parity.reduced_precision.runners")
    for backend, entry in runners.items():
        entry = _object(entry, f"parity.reduced_precision.runners.{backend}")
        measured = entry.get("status") == "measured"
        for key, kind in GATE_FIELDS.items():
            where = f"parity.reduced_precision.runners.{backend}.{key}"
            value = entry.get(key)
            if value is None and (kind == "correlation" or key == "clips" or not measured):
                continue
            if kind == "correlation" and isinstance(value, float) and math.isnan(value):
                continue  # an AU whose scores never change has no rank correlation: reported as n/a
            if kind == "bool":
                _bool(value if value is not None else False, where)
            elif kind == "count":
                _integer(value, where, 0, 1 << 40)
            else:
                _number(value, where, -1 if kind == "correlation" else 0, 1)


def _plain(value: Any) -> Any:
    """Read-only mappings back to plain JSON values."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
