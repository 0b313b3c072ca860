"""The CPU fast path: OpenVINO fp32 and bf16 runners, the INT8 model and the
agreement gates that decide whether ``auto`` may use a reduced-precision
runner.  Real bundles, real OpenVINO, real face footage; bf16 runs only
where the CPU has native bfloat16 (elsewhere it must say why it cannot)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from golden import golden, reference_input
from mdhr.errors import MDHRError
from mdhr_export.parity import agreement, reduced_precision_failures
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.backends.openvino_runner import (ISLANDS, KEEP_ORIGINAL_PRECISION, OpenVINORunner, mark_fp32_islands,
                                          openvino_unavailable_reason)
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.selection import open_runner

ov = pytest.importorskip("openvino")
BF16_MISSING = openvino_unavailable_reason("openvino-bf16")


def test_openvino_fp32_reproduces_the_official_golden_outputs(bp4d_bundle):
    runner, why = open_runner(load_bundle(bp4d_bundle), "openvino", threads=2)
    try:
        assert (runner.name, runner.precision, why) == ("openvino", "fp32", "OpenVINO (openvino); forced")
        outputs = runner.infer(reference_input())
    finally:
        runner.close()
    expected = golden("BP4D", "resnet")
    np.testing.assert_allclose(outputs["au_scores"][0], expected["au"], rtol=0, atol=1e-5)
    for region in ("up", "mid", "down1", "down2"):
        np.testing.assert_array_equal(outputs[f"region_{region}"][0].argmax(-1), expected[region].argmax(-1))


def test_bf16_islands_cover_the_region_modelling_and_nothing_upstream(bp4d_bundle):
    """On the real graph: every node from the region heads to the outputs is
    kept float32; the backbone and the frame differences are not, unless
    the frame differences are asked for too."""
    bundle = load_bundle(bp4d_bundle)
    islands = bundle.card[ISLANDS]
    assert len(islands["region_modelling"]) > 100 and len(islands["frame_differences"]) == 8
    model = ov.Core().read_model(str(bundle.artifact("onnx")))
    marked = mark_fp32_islands(model, {"region_modelling": islands["region_modelling"]})
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    outputs = {result.input_value(0).get_node().get_friendly_name() for result in model.get_results()}
    assert outputs == {"au_scores", "region_up", "region_mid", "region_down1", "region_down2"} and outputs <= marked
    assert set(islands["region_modelling"]) & set(ops) <= marked
    assert all(KEEP_ORIGINAL_PRECISION in ops[name].get_rt_info() for name in marked)
    def marked_of(kind):
        return [n for n, op in ops.items() if op.get_type_name() == kind and n in marked]

    # the backbone's and the dynamic branch's 63 convolutions run reduced; the
    # per-AU temporal convolution (grouped) and the region heads' matrix products do not
    assert marked_of("Convolution") == [] and len(marked_of("GroupConvolution")) == 1
    assert len(marked_of("MatMul")) == 30
    assert not set(islands["frame_differences"]) & marked
    both = mark_fp32_islands(ov.Core().read_model(str(bundle.artifact("onnx"))), islands)
    differences = {n for n in ops if n.split("/")[0] in islands["frame_differences"]}
    # helper nodes' names are numbered per read of the model: compare counts
    assert differences <= both and len(both) == len(marked) + len(differences)
    assert sorted(ops[n].get_type_name() for n in differences) == ["Add"] * 4 + ["Convolution"] * 4 + ["Subtract"] * 4
    with pytest.raises(MDHRError, match="none of the float32 islands"):
        mark_fp32_islands(model, {"region_modelling": ["no_such_node"]})


@pytest.mark.skipif(BF16_MISSING is None, reason="this CPU has native bfloat16: the bf16 runner runs instead")
def test_bf16_says_why_it_cannot_run_on_a_cpu_without_bfloat16(bp4d_bundle):
    bundle = load_bundle(bp4d_bundle)
    assert "no native bfloat16" in BF16_MISSING and "AVX-512 BF16 or AMX" in BF16_MISSING
    with pytest.raises(MDHRError, match="backend openvino-bf16 is unavailable: this CPU has no native bfloat16"):
        OpenVINORunner(bundle, "openvino-bf16")
    runner, why = open_runner(bundle, "auto")
    runner.close()
    assert runner.name == "onnxruntime-cpu" and "openvino-bf16 not used: this CPU has no native bfloat16" in why


@pytest.mark.skipif(BF16_MISSING is not None, reason=str(BF16_MISSING))
def test_bf16_runs_with_fp32_islands_where_the_cpu_has_bfloat16(bp4d_bundle):
    bundle = load_bundle(bp4d_bundle)
    runner = OpenVINORunner(bundle, "openvino-bf16", threads=2)
    try:
        assert runner.fp32_nodes > 100
        outputs = runner.infer(reference_input())
    finally:
        runner.close()
    reference = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"]).infer(reference_input())
    report = agreement(reference, outputs, bundle.threshold, bundle.au_names)
    print("openvino-bf16 vs fp32 on the golden input:", json.dumps(report, indent=1))
    assert report["au_max_abs_error"] < 5e-2


@pytest.fixture(scope="module")
def int8_bundle(disfa_short_bundle, face_avi, tmp_path_factory):
    """The DISFA 4-frame session bundle plus its INT8 model and gates,
    calibrated and judged on the face video: the export's reduced-precision
    step, run in a process of its own on a copy of the bundle (the model
    files hard-linked), so no second full export is needed."""
    folder = tmp_path_factory.mktemp("int8") / "bundle"
    folder.mkdir()
    for path in disfa_short_bundle.iterdir():
        (shutil.copy if path.name == "mdhr.json" else os.link)(path, folder / path.name)
    code = ("import json, sys; from pathlib import Path; from mdhr_export.int8 import reduced_precision_step; "
            "folder = Path(sys.argv[1]); card = json.loads((folder / 'mdhr.json').read_text()); "
            "reduced_precision_step(folder, card, Path(sys.argv[2]), True, print)")
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(face_avi)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_int8_card_records_every_gate(int8_bundle):
    card = load_bundle(int8_bundle).card
    assert card["artifacts"]["openvino_int8"] == "model_int8.xml" and (int8_bundle / "model_int8.bin").is_file()
    assert card["int8"]["kept_fp32"] == ["region_modelling"] and card["int8"]["kept_fp32_nodes"] > 100
    assert card["int8"]["calibration_clips"] == 3  # even clips of the 6 face windows; odd clips judge
    gates = card["parity"]["reduced_precision"]
    assert gates["reference"] == "onnxruntime-fp32-cpu" and "odd clips" in gates["source"]
    fp32 = gates["runners"]["openvino"]
    assert fp32["status"] == "measured" and fp32["passed"] and fp32["au_max_abs_error"] <= 1e-4
    int8 = gates["runners"]["int8"]
    assert int8["status"] == "measured" and int8["clips"] == 3 and int8["frames"] == 12
    assert set(int8["rank_correlation_per_au"]) == set(card["au_names"])
    assert int8["passed"] == (not reduced_precision_failures(int8)) and int8["failures"] == \
        reduced_precision_failures(int8)
    bf16 = gates["runners"]["openvino-bf16"]
    assert bf16["status"] == ("skipped" if BF16_MISSING else "measured")
    print("int8 gate:", {k: int8[k] for k in ("au_max_abs_error", "median_decision_agreement",
                                              "rank_correlation_min", "failures")})


def test_int8_against_fp32_on_real_face_clips(int8_bundle, face_avi):
    from mdhr_bench.video import video_clip_batches

    bundle = load_bundle(int8_bundle)
    clips = [batch for batch, _real in video_clip_batches(face_avi, bundle)]
    fp32, int8 = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"]), OpenVINORunner(bundle, "int8")
    try:
        reference = [fp32.infer(c) for c in clips]
        quantized = [int8.infer(c) for c in clips]
    finally:
        fp32.close(), int8.close()
    joined = [{k: np.concatenate([o[k] for o in outs]) for k in outs[0]} for outs in (reference, quantized)]
    report = agreement(*joined, bundle.threshold, bundle.au_names)
    print("int8 vs fp32 on 6 face clips:", {k: report[k] for k in ("au_max_abs_error", "median_decision_agreement",
                                                                   "rank_correlation_min")})
    # the same model in INT8: close to fp32, but not equal to it
    assert 1e-6 < report["au_max_abs_error"] < 0.1 and report["region_argmax_agreement"] >= 0.9


def test_auto_uses_a_reduced_precision_runner_only_when_it_passed_its_gate(int8_bundle, tmp_path):
    bundle = load_bundle(int8_bundle)
    int8 = bundle.card["parity"]["reduced_precision"]["runners"]["int8"]
    runner, why = open_runner(bundle, "auto")
    runner.close()
    if int8["passed"]:
        assert runner.name == "int8" and "int8 passed its agreement gate" in why
    else:  # untrained weights: the usual case
        assert runner.name == "onnxruntime-cpu" and "int8 not used: failed its gate: decisions agree on" in why
    # the same bundle with the other verdict recorded: auto follows the card
    flipped = tmp_path / "bundle"
    flipped.mkdir()
    for path in int8_bundle.iterdir():
        if path.name != "mdhr.json":
            os.link(path, flipped / path.name)
    card = json.loads((int8_bundle / "mdhr.json").read_text())
    card["parity"]["reduced_precision"]["runners"]["int8"]["passed"] = not int8["passed"]
    (flipped / "mdhr.json").write_text(json.dumps(card))
    runner, why = open_runner(load_bundle(flipped), "auto")
    runner.close()
    assert runner.name == ("onnxruntime-cpu" if int8["passed"] else "int8")


def test_forcing_a_runner_that_failed_its_gate_warns_in_one_line(int8_bundle, face_avi, tmp_path):
    from mdhr_runtime.cli.run import main

    bundle = load_bundle(int8_bundle)
    if bundle.card["parity"]["reduced_precision"]["runners"]["int8"]["passed"]:
        pytest.skip("the INT8 model passed its gate on this machine: nothing to warn about")
    out = tmp_path / "int8.csv"
    result = CliRunner().invoke(main, [str(face_avi), "--model", str(int8_bundle), "--out", str(out),
                                       "--backend", "int8", "--windows", "official"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: int8")]
    assert len(warnings) == 1 and "did not pass the agreement gate" in warnings[0]
    assert "% at the AU medians, lowest AU rank correlation" in warnings[0]
    assert len(out.read_text().splitlines()) == 1 + 24


def test_parity_and_bench_know_the_cpu_backends(int8_bundle, face_avi, tmp_path):
    from mdhr_bench.cli import bench_main, parity_main

    report_path = tmp_path / "parity.json"
    result = CliRunner().invoke(parity_main, ["--model", str(int8_bundle), "--video", str(face_avi), "--backends",
                                              "openvino,openvino-bf16,int8", "--max-clips", "2", "--json", str(report_path)])
    assert result.exit_code in (0, 3), result.output
    rows = {r["backend"]: r for r in json.loads(report_path.read_text())["results"]}
    assert rows["openvino"]["status"] == "ok" and rows["openvino"]["passed"] and rows["openvino"]["device"] == "cpu"
    assert rows["int8"]["status"] == "ok" and rows["int8"]["precision"] == "int8"
    assert 0 < rows["int8"]["median_decision_agreement"] <= 1
    if BF16_MISSING:
        assert rows["openvino-bf16"]["status"] == "skipped" and "no native bfloat16" in rows["openvino-bf16"]["reason"]
    bench_path = tmp_path / "bench.json"
    result = CliRunner().invoke(bench_main, ["--model", str(int8_bundle), "--backends", "onnxruntime,int8",
                                             "--warmup", "0", "--iters", "1", "--json", str(bench_path)])
    assert result.exit_code == 0, result.output
    rows = {r["backend"]: r for r in json.loads(bench_path.read_text())["results"]}
    assert rows["onnxruntime"]["speedup_vs_onnxruntime"] == 1.0 and rows["int8"]["speedup_vs_onnxruntime"] > 0
    gate = load_bundle(int8_bundle).card["parity"]["reduced_precision"]["runners"]["int8"]
    assert rows["int8"]["export_gate"]["median_decision_agreement"] == gate["median_decision_agreement"]
    assert rows["onnxruntime"]["export_gate"] is None
    assert "speed-up vs onnxruntime" in result.output and "agreement vs fp32 (export gate)" in result.output


@pytest.mark.parametrize("args, message", [
    (["--int8"], "--int8 needs --calibrate VIDEO_OR_FOLDER"),
    (["--int8", "--calibrate", "no_such_footage.mp4"], "calibration footage not found: no_such_footage.mp4"),
])
def test_export_refuses_int8_without_footage_before_any_work(tmp_path, args, message):
    from mdhr_export.cli import main

    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["--random-init", "--dataset", "DISFA", "--backbone", "resnet", "--out",
                                       str(out), *args])
    assert result.exit_code == 2 and not out.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.output


def test_bf16_emulation_rounds_like_bfloat16():
    """The emulation behind the islands measurement (mdhr_bench.bf16_islands):
    numpy's rounding and the OpenVINO graph's both equal torch's bfloat16."""
    import openvino.opset13 as ops
    import torch

    from mdhr_bench.bf16_islands import _rounded, round_to_bf16

    values = np.random.default_rng(0).standard_normal(4096).astype(np.float32) * np.float32(10.0) ** \
        np.random.default_rng(1).integers(-6, 6, 4096)
    expected = torch.from_numpy(values).bfloat16().float().numpy()
    np.testing.assert_array_equal(round_to_bf16(values), expected)
    parameter = ops.parameter([values.size], ov.Type.f32)
    compiled = ov.Core().compile_model(ov.Model([_rounded(parameter.output(0))], [parameter]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(compiled(values)[0], expected)
    assert not np.array_equal(expected, values)


def test_fp16_emulation_rounds_like_ieee_half():
    """The FP16 emulation (mdhr_bench.fp16_islands): numpy's rounding and the
    OpenVINO graph's both equal numpy's float16, subnormals included, where
    a pair of Converts would have been removed by OpenVINO."""
    import openvino.opset13 as ops

    from mdhr_bench.bf16_islands import _rounded_fp16, round_to_fp16

    rng = np.random.default_rng(0)
    values = (rng.standard_normal(8192) * np.exp(rng.uniform(-22, 10, 8192))).astype(np.float32)
    values = values[np.abs(values) <= 65504]  # half's range: overflow is not emulated
    expected = values.astype(np.float16).astype(np.float32)
    assert (np.abs(expected) < 2.0 ** -14).sum() > 500  # subnormal halves among them
    np.testing.assert_array_equal(round_to_fp16(values), expected)
    parameter = ops.parameter([values.size], ov.Type.f32)
    compiled = ov.Core().compile_model(ov.Model([_rounded_fp16(parameter.output(0))], [parameter]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_array_equal(compiled(values)[0], expected)
    assert not np.array_equal(expected, values)


def test_fp16_islands_verdict_keeps_the_smallest_set_that_pays():
    from mdhr_bench.fp16_islands import verdict

    def measured(median, rank):
        return {"median_decision_agreement": median, "rank_correlation_min": rank}

    nothing = measured(0.95, 0.990)
    cheap = {"nothing": nothing, "frame differences": measured(0.951, 0.9915),
             "region modelling": measured(0.955, 0.990), "frame differences and region modelling": measured(0.96, 0.99)}
    assert verdict(cheap)["keep_fp32"] == ["region_modelling"]  # 0.5 points of median agreement
    idle = {label: measured(0.9505, 0.9905) for label in cheap} | {"nothing": nothing}
    result = verdict(idle)
    assert result["keep_fp32"] == [] and result["buys"]["frame differences"]["median_decision_agreement"] == 0.0005
