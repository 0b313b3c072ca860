"""mdhr-export on real models: bundle contents, graph properties, parity,
FP16, TensorRT readiness, and refusals."""
import hashlib
import json
import stat

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import mdhr
from mdhr_export.cli import main
from mdhr_export.graph import tensorrt_problems, tensorrt_support
from mdhr_export.staging import staged_folder
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.files.atomic import umask
from tests.support.bundles import export, golden_checkpoint
from tests.support.golden import golden, reference_input

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow


def card(bundle_dir):
    return json.loads((bundle_dir / "mdhr.json").read_text())


def run(bundle_dir, artifact, clips):
    session = ort.InferenceSession(str(bundle_dir / artifact), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"clips": clips})))


def test_bundle_card(bp4d_bundle):
    c = card(bp4d_bundle)
    assert c["format"] == 2 and (c["dataset"], c["backbone"]) == ("BP4D", "resnet")
    assert c["au_names"] == list(mdhr.AU_SETS["BP4D"].au_names)
    assert c["threshold"] == 0.5 and c["untrained"] is False
    assert c["input"]["shape"] == [1, 16, 3, 224, 224]
    assert c["input"]["mean"] == [0.485, 0.456, 0.406] and c["input"]["std"] == [0.229, 0.224, 0.225]
    assert c["outputs"] == ["au_scores", "region_up", "region_mid", "region_down1", "region_down2"]
    assert {k: v for k, v in c["artifacts"].items() if v} == {
        "onnx": "model.onnx", "onnx_fp16": "model_fp16.onnx", "frame_stage": "frame_stage.onnx",
        "clip_stage": "clip_stage.onnx", "frame_stage_fp16": "frame_stage_fp16.onnx",
        "clip_stage_fp16": "clip_stage_fp16.onnx", "weights": "weights.bin", "weights_fp16": "weights_fp16.bin",
        "frame_batch": "frame_batch.onnx", "clip_centre": "clip_centre.onnx"}
    assert c["target"] == "all" and set(c["artifact_bytes"]) == {k for k, v in c["artifacts"].items() if v}
    for kind, name in c["artifacts"].items():  # what each file is, for the runtime to check
        if name:
            assert c["artifact_sha256"][kind] == hashlib.sha256((bp4d_bundle / name).read_bytes()).hexdigest()
    assert len(c["source"]["checkpoint_sha256"]) == 64
    assert set(c["timings_s"]) >= {"load", "export", "simplify", "parity", "stages", "fp16", "stages_fp16", "engine"}
    fp32 = c["parity"]["onnxruntime_fp32_cpu"]
    assert fp32["au_max_abs_error"] <= 1e-4 and fp32["region_argmax_agreement"] == 1.0
    assert c["parity"]["simplification_max_abs_error"] <= 1e-5
    fp16 = c["parity"]["fp16"]
    assert "float16" in fp16["estimate_cpu"]["method"] and fp16["measured_gpu"] is None
    assert not list(bp4d_bundle.parent.glob(".bundle*")), "staging folders left behind"
    assert stat.S_IMODE(bp4d_bundle.stat().st_mode) == 0o777 & ~umask(), "bundle hidden from other users"


def stage_outputs(bundle_dir, precision, clip):
    from mdhr_runtime.backends.stages import StageRunner

    runner = StageRunner(load_bundle(bundle_dir), precision, providers=["CPUExecutionProvider"])
    window, previous = [], None
    for crop in clip:
        features, previous = runner.frame(crop, previous)
        window.append(features)
    return runner.clip_all(window)


def test_stage_graphs_equal_the_single_graph_and_the_official_model(bp4d_bundle):
    """Frame stage per frame + clip stage per window, in ONNX Runtime, on the
    golden input: the official outputs, and model.onnx's."""
    c = card(bp4d_bundle)
    assert c["stages"]["cached_bytes_per_frame"] == 514_304
    assert c["parity"]["stages_fp32_cpu"]["au_max_abs_error"] <= 1e-5
    assert c["parity"]["stages_fp32_cpu"]["region_argmax_agreement"] == 1.0
    clip = reference_input()
    staged = stage_outputs(bp4d_bundle, "fp32", clip[0])
    single = run(bp4d_bundle, "model.onnx", clip)
    expected = golden("BP4D", "resnet")
    np.testing.assert_allclose(staged["au_scores"], expected["au"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(staged["au_scores"], single["au_scores"][0], rtol=0, atol=1e-5)
    # the frame stage a hop per call gives the one-frame graph's bits on the golden input too
    batch = c["stages"]["frame_batch"]
    assert {k: batch[k] for k in ("frames", "bit_identical")} == {"frames": 8, "bit_identical": True}
    assert batch["speedup"] > 0  # measured at export: the runtime calls frame_batch only where clearly faster
    from mdhr_runtime.backends.stages import (
        MIN_SPEEDUP,
        StageRunner,
        batch_differences,
        centre_differences,
        clip_windows,
    )

    runner = StageRunner(load_bundle(bp4d_bundle), providers=["CPUExecutionProvider"])
    assert runner.batch_frames == (8 if batch["speedup"] >= MIN_SPEEDUP else 1)
    runner.batch_frames = 8
    assert batch_differences(runner, list(clip[0])) == []
    # the centre-only clip stage gives the clip stage's bits at the centre, on the golden input's window too
    centre = c["stages"]["clip_centre"]
    assert {k: centre[k] for k in ("position", "bit_identical")} == {"position": 8, "bit_identical": True}
    assert centre["speedup"] > 1.5 and (bp4d_bundle / c["artifacts"]["clip_centre"]).is_file()
    assert runner.centre_position == 8
    assert centre_differences(runner, clip_windows(runner, [clip])) == []
    for region in ("up", "mid", "down1", "down2"):
        ours = staged[f"region_{region}"]
        np.testing.assert_array_equal(ours.argmax(-1), expected[region].argmax(-1))
        np.testing.assert_array_equal(ours.argmax(-1), single[f"region_{region}"][0].argmax(-1))


def test_fp16_stages_compute_the_frame_differences_in_fp16(bp4d_bundle):
    """No fp32 islands (measured not to pay, docs/bundles.md): the frame
    differences and the convolutions reading them are FP16 like the rest."""
    c = card(bp4d_bundle)
    proto = onnx.load(str(bp4d_bundle / "frame_stage_fp16.onnx"), load_external_data=False)
    subs = [n for n in proto.graph.node if n.op_type == "Sub"]
    assert len(subs) == 4 and {n.name for n in subs} <= set(c["stages"]["frame_differences"])
    assert c["stages"]["fp32_nodes"] == []
    initialisers = {i.name: i.data_type for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.name in c["stages"]["frame_differences"] and n.op_type == "Conv"]
    assert len(convs) == 4 and all(initialisers[n.input[1]] == onnx.TensorProto.FLOAT16 for n in convs)
    fp16 = c["parity"]["stages_fp16"]
    assert fp16["au_decision_agreement"] >= 0.99 and fp16["au_max_abs_error"] < 1e-2
    staged = stage_outputs(bp4d_bundle, "fp16", reference_input()[0])
    np.testing.assert_allclose(staged["au_scores"], golden("BP4D", "resnet")["au"], rtol=0, atol=1e-2)


def test_static_graph_with_model_card_metadata(bp4d_bundle):
    proto = onnx.load(str(bp4d_bundle / "model.onnx"), load_external_data=False)
    (clips,) = proto.graph.input
    assert clips.name == "clips" and clips.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in clips.type.tensor_type.shape.dim] == [1, 16, 3, 224, 224]
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert shapes == {"au_scores": [1, 16, 12], "region_up": [1, 16, 16], "region_mid": [1, 16, 2],
                      "region_down1": [1, 16, 8], "region_down2": [1, 16, 16]}
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["mdhr.dataset"] == "BP4D" and meta["mdhr.backbone"] == "resnet"
    assert meta["mdhr.au_names"][0] == "AU01" and meta["mdhr.threshold"] == 0.5
    assert meta["mdhr.untrained"] is False
    assert meta["mdhr.source"]["checkpoint_sha256"] == card(bp4d_bundle)["source"]["checkpoint_sha256"]
    assert {"torch", "onnx"} <= set(meta["mdhr.source"])


def test_onnx_reproduces_the_official_golden_outputs(bp4d_bundle):
    out = run(bp4d_bundle, "model.onnx", reference_input())
    expected = golden("BP4D", "resnet")
    np.testing.assert_allclose(out["au_scores"][0], expected["au"], rtol=0, atol=1e-5)
    for region in ("up", "mid", "down1", "down2"):
        ours = out[f"region_{region}"][0]
        np.testing.assert_allclose(ours, expected[region], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(ours.argmax(-1), expected[region].argmax(-1))


def test_graph_is_tensorrt_ready(bp4d_bundle):
    proto = onnx.load(str(bp4d_bundle / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"BitwiseAnd", "ArgMax", "Where", "Not", "IsInf"}, ops
    assert tensorrt_problems(proto) == []
    assert tensorrt_support()["tensorrt_version"].startswith("10")


def test_tensorrt_check_catches_what_the_parser_rejects():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [4])
    node = onnx.helper.make_node("BitwiseAnd", ["x", "x"], ["y"], name="bits")
    proto = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    assert tensorrt_problems(proto) == ["bits: operator BitwiseAnd unsupported"]


def test_fp16_model_keeps_float32_io_and_computes_in_fp16(bp4d_bundle):
    proto = onnx.load(str(bp4d_bundle / "model_fp16.onnx"), load_external_data=False)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in [*proto.graph.input, *proto.graph.output])
    weights = {i.data_type for i in proto.graph.initializer if len(i.dims) == 4}
    assert weights == {onnx.TensorProto.FLOAT16}  # the multi-scale difference convolutions too
    c = card(bp4d_bundle)
    assert c["fp32_nodes"] == [] and len(c["reduced_precision_islands"]["frame_differences"]) == 8
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in proto.graph.node:
        if node.name in c["reduced_precision_islands"]["frame_differences"]:
            assert types[node.output[0]] == onnx.TensorProto.FLOAT16, node.name
    clips = reference_input()
    half, full = run(bp4d_bundle, "model_fp16.onnx", clips), run(bp4d_bundle, "model.onnx", clips)
    assert np.abs(half["au_scores"] - full["au_scores"]).max() < 1e-2


@pytest.fixture(scope="module")
def swin_batched_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("swin")
    ckpt = golden_checkpoint(folder, "DISFA", "swin_transformer")
    out = folder / "bundle"
    export(["--ckpt", str(ckpt), "--out", str(out), "--batch", "2", "--frames", "12",
            "--dataset", "DISFA", "--backbone", "swin_transformer"])
    return out


@pytest.mark.bigmem  # the Swin-B export peaks at 6.6 GiB: run with -m bigmem
def test_swin_batch_2_and_12_frames(swin_batched_bundle):
    c = card(swin_batched_bundle)
    assert c["input"]["shape"] == [2, 12, 3, 224, 224] and c["backbone"] == "swin_transformer"
    assert c["parity"]["onnxruntime_fp32_cpu"]["au_max_abs_error"] <= 1e-4
    assert c["parity"]["clips"] >= 3
    clips = reference_input(batch=2, frames=12)
    out = run(swin_batched_bundle, "model.onnx", clips)
    model = mdhr.load_model(next(swin_batched_bundle.parent.glob("*.pth")))
    with torch.no_grad():
        *_, au = model(torch.from_numpy(clips))
    np.testing.assert_allclose(out["au_scores"].reshape(24, 8), au.numpy(), rtol=0, atol=1e-4)


def test_short_clips_random_init_says_untrained(disfa_model_bundle):
    c = card(disfa_model_bundle)
    assert c["untrained"] is True and c["source"]["checkpoint_sha256"] is None
    assert c["input"]["shape"] == [1, 4, 3, 224, 224]
    assert c["parity"]["onnxruntime_fp32_cpu"]["region_argmax_agreement"] == 1.0
    meta = {p.key: p.value for p in onnx.load(str(disfa_model_bundle / "model.onnx"),
                                               load_external_data=False).metadata_props}
    assert meta["mdhr.untrained"] == "true"


# ----------------------------------------------------------------- refusals
def refused(args, *expected):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    # progress lines may precede it; the error itself is one line, the last
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in result.output, result.output
    assert sum(out.startswith("error") for out in result.output.splitlines()) == 1
    for text in expected:
        assert text in line, line
    return line


def test_bad_inputs_give_one_line(tmp_path):
    out = tmp_path / "out"
    refused(["--ckpt", str(tmp_path / "missing.pth"), "--out", str(out)], "checkpoint not found")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    refused(["--ckpt", str(corrupt), "--out", str(out)], "not a PyTorch checkpoint")
    refused(["--random-init", "--out", str(out), "--opset", "11"], "opset 11 is not supported")
    refused(["--out", str(out)], "--ckpt")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    refused(["--random-init", "--out", str(blocker / "bundle"), "--frames", "2"], "is not a folder")
    refused(["--random-init", "--out", str(blocker)], "is a file, not a folder")
    not_a_bundle = tmp_path / "photos"
    not_a_bundle.mkdir()
    (not_a_bundle / "me.jpg").write_bytes(b"x")
    refused(["--random-init", "--out", str(not_a_bundle)], "is not an MDHR bundle")
    assert not out.exists()


def test_mismatched_checkpoint_is_named(tmp_path):
    ckpt = tmp_path / "disfa.pth"
    torch.save(mdhr.build_model("DISFA", "resnet").state_dict(), ckpt)
    refused(["--ckpt", str(ckpt), "--out", str(tmp_path / "o"), "--dataset", "BP4D"],
            "8 AU classifiers (DISFA), but --dataset BP4D was asked")
    assert not (tmp_path / "o").exists()


def test_verbose_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "x.pth"), "--out", str(tmp_path / "o"),
                                       "--verbose"])
    assert result.exit_code != 0 and result.exception is not None


def test_failed_write_keeps_the_previous_bundle(tmp_path, disfa_model_bundle):
    target = tmp_path / "bundle"
    target.mkdir()
    good = (disfa_model_bundle / "mdhr.json").read_text()
    (target / "mdhr.json").write_text(good)
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "model.onnx").write_bytes(b"half written")
            raise RuntimeError("export failed midway")
    assert (target / "mdhr.json").read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with staged_folder(target) as staging:
        (staging / "mdhr.json").write_text("{}")
    assert (target / "mdhr.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
