"""Each weight once per precision, and --target: the graphs of one precision
share one weights file (ONNX external data at offsets) that every reader
opens by path; a --target gpu bundle holds only what engines are built
from, and the runtime says in one line which target to export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from mdhr.errors import MDHRError
from mdhr_export import parity
from mdhr_export.cli import main as export_main
from mdhr_export.weights import ALIGNMENT, INLINE_BYTES
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.bundle import TARGET_ARTIFACTS, load_bundle
from tests.support.refusals import one_line_refusal

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow

GRAPHS = {"weights": ("model.onnx", "frame_stage.onnx", "clip_stage.onnx"),
          "weights_fp16": ("model_fp16.onnx", "frame_stage_fp16.onnx", "clip_stage_fp16.onnx")}


def card(folder: Path) -> dict:
    return json.loads((folder / "mdhr.json").read_text())


def external(path: Path) -> dict[str, tuple[str, int, int]]:
    """Each external initializer of a graph: (file, offset, length)."""
    proto = onnx.load(str(path), load_external_data=False)
    found = {}
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in tensor.external_data}
            found[tensor.name] = (entry["location"], int(entry["offset"]), int(entry["length"]))
        else:
            assert tensor.ByteSize() < INLINE_BYTES, tensor.name
    return found


@pytest.fixture(scope="module")
def gpu_bundle(tmp_path_factory):
    """The cheapest real bundle (untrained DISFA ResNet-50, 4-frame clips) for --target gpu."""
    from tests.support.bundles import export

    out = tmp_path_factory.mktemp("gpu") / "bundle"
    export(["--random-init", "--dataset", "DISFA", "--backbone", "resnet", "--frames", "4", "--target", "gpu",
            "--out", str(out)])
    return out


@pytest.mark.parametrize("kind", GRAPHS)
def test_the_graphs_of_a_precision_share_one_weights_file(bp4d_bundle, kind):
    c = card(bp4d_bundle)
    weights = bp4d_bundle / c["artifacts"][kind]
    placed = {name: external(bp4d_bundle / name) for name in GRAPHS[kind]}
    assert all(location == weights.name for graph in placed.values() for location, _, _ in graph.values())
    model, frame, clip = (set(p.values()) for p in placed.values())
    # the stages are cut from the model: their weights are the model's, stored once, but for a few
    # the cut folds differently (the motion convolutions' weights without their bias: 0.1% of the bytes)
    assert frame and clip and not frame & clip and len(frame & model) > 0.9 * len(frame)
    assert sum(length for _, _, length in (frame | clip) - model) < 0.002 * sum(length for _, _, length in model)
    regions = sorted({(offset, length) for graph in placed.values() for _, offset, length in graph.values()})
    assert all(offset % ALIGNMENT == 0 for offset, _ in regions)
    assert all(a[0] + a[1] <= b[0] for a, b in zip(regions, regions[1:]))  # no two tensors overlap
    stored = sum(length for _, length in regions)
    assert stored <= weights.stat().st_size < stored + ALIGNMENT * len(regions)
    assert c["artifact_bytes"][kind] == weights.stat().st_size
    for name in GRAPHS[kind]:
        onnx.checker.check_model(str(bp4d_bundle / name))  # by path: the checker opens the external data


def test_bundle_sizes_and_fp16_without_fp32_islands(bp4d_bundle):
    c = card(bp4d_bundle)
    assert sum(c["artifact_bytes"].values()) <= 0.6e9
    # 93.2M weights: 373 MB in float32, half that in float16, each stored once
    assert c["artifact_bytes"]["weights"] < 380e6 and c["artifact_bytes"]["weights_fp16"] < 190e6
    assert c["fp16"]["kept_fp32"] == [] and c["fp32_nodes"] == []
    assert all(w["float32_fraction"] <= 0.05 for w in c["fp16"]["weights"].values()), c["fp16"]


def test_openvino_reads_the_shared_fp16_weights(bp4d_bundle):
    ov = pytest.importorskip("openvino")
    from mdhr_runtime.backends.runners import check_clips

    clips = parity.parity_clips(1, 16)[:1]
    compiled = ov.Core().compile_model(str(bp4d_bundle / "model_fp16.onnx"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    ours = compiled(check_clips(clips[0], (1, 16, 3, 224, 224)))[compiled.output("au_scores")]
    fp32 = OnnxRuntimeRunner(load_bundle(bp4d_bundle), providers=["CPUExecutionProvider"]).infer(clips[0])
    assert np.abs(ours - fp32["au_scores"]).max() < 1e-2


def test_a_gpu_bundle_holds_what_engines_are_built_from(gpu_bundle):
    c = card(gpu_bundle)
    assert c["target"] == "gpu"
    assert all(c["artifacts"].get(kind) is None for kind in TARGET_ARTIFACTS["cpu"])
    assert {p.name for p in gpu_bundle.iterdir()} == {"mdhr.json", *(c["artifacts"][kind] for kind in
                                                                      TARGET_ARTIFACTS["gpu"])}
    assert set(c["artifact_bytes"]) == set(TARGET_ARTIFACTS["gpu"])
    bundle = load_bundle(gpu_bundle)
    # mdhr-build checks engines against the fp32 ONNX's outputs saved at export: they are ONNX Runtime fp32's
    from mdhr_export.build import saved_reference

    saved = saved_reference(bundle.artifact("parity_reference"))
    fp16 = OnnxRuntimeRunner(bundle, "fp16", providers=["CPUExecutionProvider"])
    outputs = parity.concat([fp16.infer(clip) for clip in parity.parity_clips(bundle.batch, bundle.frames)])
    assert set(saved) == set(c["outputs"]) and saved["au_scores"].shape == outputs["au_scores"].shape
    assert 0 < np.abs(saved["au_scores"] - outputs["au_scores"]).max() < 1e-2


def test_the_runtime_names_the_target_to_export(gpu_bundle):
    from mdhr_export.build import engine_source
    from mdhr_runtime.backends.openvino_runner import openvino_unavailable_reason
    from mdhr_runtime.backends.stages import StageRunner

    bundle = load_bundle(gpu_bundle)
    for fails in (lambda: OnnxRuntimeRunner(bundle, "fp32"), lambda: StageRunner(bundle, "fp32"),
                  lambda: engine_source(bundle, "fp32")):
        with pytest.raises(MDHRError) as refused:
            fails()
        assert "--target cpu (or all)" in str(refused.value) and "\n" not in str(refused.value)
    assert "--target cpu (or all)" in openvino_unavailable_reason("openvino", bundle)
    assert engine_source(bundle, "fp16") == gpu_bundle / "model_fp16.onnx"


def test_targets_refuse_what_they_leave_out(tmp_path):
    one_line_refusal(export_main, ["--random-init", "--out", tmp_path / "b", "--target", "cpu", "--fp16"],
                     "--fp16 writes the graphs TensorRT engines are built from")
    one_line_refusal(export_main, ["--random-init", "--out", tmp_path / "b", "--target", "gpu", "--int8",
                                   "--calibrate", tmp_path], "--int8 and --calibrate are for the CPU runners")
    assert not (tmp_path / "b").exists()
