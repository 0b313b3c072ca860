"""The card is one typed record, written and read by the same module:
whatever valid card a reader gets, ``to_json`` writes back exactly what was
read, and a card built the way the export builds it (sections added to a
frozen ``Card``) reads back equal to itself.  Property-based over valid
cards: every dataset, artifact set, stage account, reduced-precision
choice, parity report, gate and timing the export can write."""
from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr.aus import AU_SETS, BACKBONES, IMAGE_MEAN, IMAGE_STD
from mdhr_runtime.card import (
    ARTIFACT_KINDS,
    ENGINE_PRECISIONS,
    ISLAND_PARTS,
    LAYER_GROUP_MODULES,
    PREVIOUS_TAPS,
    TARGETS,
    Card,
    EngineBuild,
    FrameBatch,
    PrecisionChoice,
    Stages,
)

GROUPS = ["Backbone.stem", "Backbone.layer1", "Backbone.layer4", *LAYER_GROUP_MODULES, *ISLAND_PARTS]
fraction = st.floats(0, 1)
error = st.floats(0, 10)
text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30)
node_names = st.lists(st.text("abcdefgh/_.:0123456789", min_size=1, max_size=40), max_size=6)
json_leaf = st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | st.floats(allow_nan=False,
                                                                                       allow_infinity=False) | text
keys = st.text("abcxyz_", max_size=6)
json_value = (json_leaf | st.lists(json_leaf, max_size=4) | st.dictionaries(keys, json_leaf, max_size=4)
              | st.dictionaries(keys, st.lists(json_leaf, max_size=3), max_size=3))  # nested as reports are


@st.composite
def agreements(draw, median: bool = False) -> dict:
    report = {"frames": draw(st.integers(1, 10 ** 6)), "au_max_abs_error": draw(error),
              "au_decision_agreement": draw(fraction), "region_argmax_agreement": draw(fraction),
              "regions": {"up": {"argmax_agreement": draw(fraction)}}}
    if median or draw(st.booleans()):
        report["median_decision_agreement"] = draw(fraction)
    return report


@st.composite
def gates(draw) -> dict:
    if draw(st.booleans()):
        return {"status": "skipped", "reason": draw(text), "passed": False}
    return {"status": "measured", "clips": draw(st.integers(0, 500)), "passed": draw(st.booleans()),
            **draw(agreements(median=True)),
            "rank_correlation_min": draw(st.none() | st.floats(-1, 1)), "failures": draw(st.lists(text, max_size=2))}


@st.composite
def parity_sections(draw) -> dict:
    parity = {"clips": draw(st.integers(1, 64)), "reference": "pytorch-fp32-cpu",
              "onnxruntime_fp32_cpu": draw(agreements()), "simplification_max_abs_error": draw(error)}
    if draw(st.booleans()):
        parity["fp16"] = {"reference": "onnxruntime-fp32-cpu", "estimate_cpu": {"method": "emulation",
                                                                                 **draw(agreements())},
                          "measured_gpu": None}
    if draw(st.booleans()):
        parity["tensorrt"] = {"precision": draw(st.sampled_from(ENGINE_PRECISIONS)), "passed": True,
                              "failures": [], **draw(agreements(median=True))}
    if draw(st.booleans()):
        backends = draw(st.sets(st.sampled_from(["int8", "openvino", "openvino-bf16"])))
        parity["reduced_precision"] = {"gate": draw(text), "runners": {b: draw(gates()) for b in sorted(backends)}}
    return parity


@st.composite
def choices(draw, can_skip: bool) -> dict:
    if can_skip and draw(st.booleans()):
        return {"kept_fp32": None, "skipped": draw(text)}
    choice = {"kept_fp32": draw(st.lists(st.sampled_from(GROUPS), max_size=5)),
              "speedup_vs_onnxruntime_at_export": draw(st.floats(0.1, 10))}
    if draw(st.booleans()):
        choice["search"] = {"passed": draw(st.booleans()), "chosen": 0, "frontier": draw(st.lists(json_value,
                                                                                                  max_size=2))}
    return choice


@st.composite
def stage_accounts(draw, outputs: list[str], frames: int, named: set[str]) -> dict:
    taps = {name: [1, draw(st.integers(1, 64)), draw(st.integers(1, 56)), draw(st.integers(1, 56))]
            for name in PREVIOUS_TAPS}
    stages = {"cut": draw(text), "frame_stage": {"inputs": {"frame": [1, 3, 224, 224], **taps}, "outputs": {}},
              "clip_stage": {"inputs": {"static": [1, frames, 49, 512]}, "outputs": outputs}}
    if draw(st.booleans()):
        stages["cached_bytes_per_frame"] = draw(st.integers(0, 10 ** 8))
    if draw(st.booleans()):
        stages["frame_differences"] = draw(node_names)
    if "frame_batch" in named or draw(st.booleans()):
        identical = "frame_batch" in named or draw(st.booleans())
        stages["frame_batch"] = {"frames": draw(st.integers(1, frames)), "bit_identical": identical}
        if not identical:
            stages["frame_batch"]["differing_outputs"] = draw(st.lists(st.sampled_from(["static", "dynamics",
                                                                                        "tap1"]), min_size=1))
    if draw(st.booleans()):
        stages["fp32_nodes"] = draw(node_names)
    if "clip_centre" in named or draw(st.booleans()):
        identical = "clip_centre" in named or draw(st.booleans())
        stages["clip_centre"] = {"position": draw(st.integers(0, frames - 1)), "bit_identical": identical}
        if not identical:
            stages["clip_centre"]["differing_outputs"] = draw(st.lists(st.sampled_from(outputs), min_size=1))
        if draw(st.booleans()):
            stages["clip_centre"]["speedup"] = draw(st.floats(0, 1000))
    return stages


@st.composite
def card_data(draw) -> dict:
    """A valid card as ``mdhr.json`` holds it (the canonical form ``to_json`` writes)."""
    dataset = draw(st.sampled_from(sorted(AU_SETS)))
    aus = AU_SETS[dataset]
    regions = {r.name: r.num_classes for r in aus.regions}
    outputs = ["au_scores", *(f"region_{name}" for name in regions)]
    frames, untrained = draw(st.integers(2, 64)), draw(st.booleans())
    kinds = draw(st.sets(st.sampled_from(ARTIFACT_KINDS)) | st.just(set())) | {draw(st.sampled_from(["onnx",
                                                                                                    "onnx_fp16"]))}
    stages = draw(st.none() | stage_accounts(outputs, frames, kinds & {"frame_batch", "clip_centre"}))
    if stages is None:
        kinds -= {"frame_batch", "clip_centre"}
    data = {
        "format": 2, "dataset": dataset, "backbone": draw(st.sampled_from(BACKBONES)),
        "au_names": list(aus.au_names), "threshold": draw(st.floats(-1, 1)),
        "input": {"name": "clips", "shape": [draw(st.integers(1, 16)), frames, 3, 224, 224],
                  "layout": "RGB, pixel/255 then (x - mean) / std", "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
        "outputs": outputs, "regions": regions, "untrained": untrained, "target": draw(st.sampled_from(TARGETS)),
        "source": {"checkpoint_sha256": None if untrained else "ab" * 32, "torch": draw(st.none() | text),
                   "onnx": "1.19.0", "opset": draw(st.integers(18, 23))},
        "artifacts": {kind: (f"{kind}.file" if kind in kinds else None) for kind in ARTIFACT_KINDS},
        "artifact_bytes": {kind: draw(st.integers(0, 10 ** 9)) for kind in ARTIFACT_KINDS if kind in kinds},
        "artifact_sha256": {kind: draw(st.sampled_from("0123456789abcdef")) * 64 for kind in ARTIFACT_KINDS
                            if kind in kinds},
    }
    if draw(st.booleans()):
        data["reduced_precision_islands"] = {part: draw(node_names.filter(bool)) for part in ISLAND_PARTS}
    optional = {"stages": stages, "engine_build": draw(st.none() | st.fixed_dictionaries(
                    {"precision": st.sampled_from(ENGINE_PRECISIONS), "tensorrt": st.just("10.12.0.36"),
                     "gpu": text, "build_seconds": st.floats(0, 1000)})),
                "bf16": draw(st.none() | choices(can_skip=True)), "parity": draw(st.none() | parity_sections()),
                "notes": draw(st.none() | json_value), "int8": draw(st.none() | choices(can_skip=False)),
                "timings_s": draw(st.none() | st.dictionaries(st.sampled_from(["load", "export", "fp16", "int8"]),
                                                              st.floats(0, 1000)))}
    data.update((key, value) for key, value in optional.items() if value is not None)
    return data


@settings(max_examples=300, deadline=None)
@given(data=card_data())
def test_a_card_is_written_back_as_read(data):
    card = Card.from_json(data)
    assert card.to_json() == data
    assert Card.from_json(json.loads(json.dumps(card.to_json()))) == card


@settings(max_examples=200, deadline=None)
@given(data=card_data(), parity=parity_sections(), bf16=choices(can_skip=True), int8=choices(can_skip=False),
       fp32_nodes=node_names, differing=st.lists(st.sampled_from(["static", "dynamics"]), min_size=1))
def test_a_card_built_as_the_export_builds_it_reads_back_equal(data, parity, bf16, int8, fp32_nodes, differing):
    """Sections made by the writer (typed records, the parity and reports
    added by ``with_checks`` and ``with_reports``) serialise to a card that
    parses back to the same record."""
    card = Card.from_json(data)
    checks = {key: value for key, value in parity.items() if key != "reduced_precision"}
    built = dataclasses.replace(
        card.with_checks(**checks).with_checks(reduced_precision=parity.get("reduced_precision")),
        bf16=PrecisionChoice.from_json(bf16, "bf16"), int8=PrecisionChoice.from_json(int8, "int8"),
        engine_build=EngineBuild.from_json({"precision": "fp16", "gpu": "a GPU", "build_seconds": 3.5}),
        timings=MappingProxyType({"load": 1.5, "export": 20.25}),
        islands={part: ("a", "b/c") for part in ISLAND_PARTS}).with_reports(fp32_nodes=fp32_nodes)
    if card.stages is not None and "frame_batch" not in card.artifacts:
        built = dataclasses.replace(built, stages=dataclasses.replace(
            card.stages, fp32_nodes=tuple(fp32_nodes),
            frame_batch=FrameBatch(max(card.input.frames // 2, 1), False, tuple(differing))))
    assert Card.from_json(built.to_json()) == built
    assert built.parity.fp32.au_max_abs_error == parity["onnxruntime_fp32_cpu"]["au_max_abs_error"]
    assert built.int8.kept_fp32 == tuple(int8["kept_fp32"]) and built.engine_build.build_seconds == 3.5


def test_the_stage_account_keeps_its_order_with_its_typed_entries():
    """The export writes the stage graphs' account, then the frame
    differences, the frame batch and the FP16 nodes: written back so."""
    outputs = ("au_scores", "region_up")
    account = {"cut": "here", "frame_stage": {"inputs": {name: [1, 8, 4, 4] for name in PREVIOUS_TAPS}},
               "clip_stage": {"outputs": list(outputs)}, "cached_bytes_per_frame": 100,
               "frame_differences": ["sub"], "frame_batch": {"frames": 2, "bit_identical": True},
               "fp32_nodes": []}
    stages = Stages.from_json(account, outputs)
    assert stages.frame_differences == ("sub",) and stages.fp32_nodes == () and stages.frame_batch.frames == 2
    assert list(stages.to_json()) == list(account) and stages.to_json() == account
    assert Stages.from_json(stages.to_json(), outputs) == stages
