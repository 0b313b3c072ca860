"""mdhr-triton: the model repository's config.pbtxt files parse with Triton's
own schema (tritonclient's model_config_pb2) and describe the bundle's
graph exactly."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
from click.testing import CliRunner

from mdhr_export.cli import triton_main

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def run(args, expect=0):
    result = CliRunner().invoke(triton_main, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def test_onnx_model_config_matches_the_graph(disfa_short_bundle, tmp_path):
    repo = tmp_path / "models"
    links = (disfa_short_bundle / "weights.bin").stat().st_nlink
    run([disfa_short_bundle, repo, "--instances", 2])
    assert sorted(p.name for p in repo.iterdir()) == ["mdhr_disfa_resnet"]
    folder = repo / "mdhr_disfa_resnet"
    config = parse(folder / "config.pbtxt")
    assert config.name == folder.name and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 0  # static graph: the dims are the whole shape
    assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] == \
        [(2, "KIND_GPU")]
    # the graph and the shared weights file it reads (ONNX external data), under the name it reads it by
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx", "weights.bin"]
    # a copy: the onnx package refuses external data with more than one hard link
    assert (folder / "1" / "weights.bin").stat().st_nlink == 1
    assert (disfa_short_bundle / "weights.bin").stat().st_nlink == links
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    graph_inputs = {i.name: i.shape for i in session.get_inputs()}
    graph_outputs = {o.name: o.shape for o in session.get_outputs()}
    assert {t.name: list(t.dims) for t in config.input} == graph_inputs
    assert {t.name: list(t.dims) for t in config.output} == graph_outputs
    assert all(model_config_pb2.DataType.Name(t.data_type) == "TYPE_FP32" for t in [*config.input, *config.output])
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    assert (folder / "au_names.txt").read_text().split() == card["au_names"]
    assert os.path.samefile(folder / "1" / "model.onnx", disfa_short_bundle / card["artifacts"]["onnx"]) or \
        (folder / "1" / "model.onnx").read_bytes() == (disfa_short_bundle / card["artifacts"]["onnx"]).read_bytes()

    # The commented TensorRT accelerator is valid configuration once uncommented.
    text = (folder / "config.pbtxt").read_text()
    block = text[text.index("# optimization {"):]
    uncommented = text[:text.index("# On a GPU")] + re.sub(r"^# ?", "", block, flags=re.M)
    accelerated = text_format.Parse(uncommented, model_config_pb2.ModelConfig())
    accelerator = accelerated.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"


def test_a_bundle_with_an_engine_also_gets_a_tensorrt_plan_model(disfa_short_bundle, tmp_path):
    """This machine has no GPU, so the engine is a stand-in file: what is
    tested is the repository written for a bundle that has one."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    os.link(disfa_short_bundle / card["artifacts"]["onnx"], bundle / card["artifacts"]["onnx"])
    shutil.copy(disfa_short_bundle / card["artifacts"]["weights"], bundle)  # the weights file it reads: see above
    (bundle / "model.plan").write_bytes(b"stand-in engine")
    card["artifacts"]["engine"] = "model.plan"
    (bundle / "mdhr.json").write_text(json.dumps(card))
    repo = tmp_path / "models"
    run([bundle, repo, "--cpu"])
    config = parse(repo / "mdhr_disfa_resnet_trt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.name == "mdhr_disfa_resnet_trt"
    assert list(config.input[0].dims) == card["input"]["shape"]
    assert (repo / "mdhr_disfa_resnet_trt" / "1" / "model.plan").read_bytes() == b"stand-in engine"
    assert "optimization" not in str(config)
    assert parse(repo / "mdhr_disfa_resnet" / "config.pbtxt").instance_group[0].kind == \
        model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_refusals_write_nothing(disfa_short_bundle, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "other_model").mkdir()
    for args, words in (([tmp_path / "nobundle", tmp_path / "r"], "no such bundle folder"),
                        ([disfa_short_bundle, taken], "is not empty")):
        result = run(args, expect=2)
        assert result.output.startswith("error:") and words in result.output
    assert not (tmp_path / "r").exists() and [p.name for p in taken.iterdir()] == ["other_model"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_graph_without_its_weights_file_is_named(disfa_short_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    card = json.loads((disfa_short_bundle / "mdhr.json").read_text())
    os.link(disfa_short_bundle / card["artifacts"]["onnx"], bundle / card["artifacts"]["onnx"])  # weights.bin left out
    (bundle / "mdhr.json").write_text(json.dumps(card))
    result = run([bundle, tmp_path / "models"], expect=2)
    assert result.output.strip().splitlines() == [
        f"error: {bundle}: incomplete bundle: {bundle / 'weights.bin'} missing; export the bundle again"]
    assert not (tmp_path / "models").exists()
