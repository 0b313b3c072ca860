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

from mdhr.errors import MDHRError
from mdhr_export.parity import agreement
from mdhr_runtime.backends.layer_groups import KEEP_ORIGINAL_PRECISION, mark_fp32_islands
from mdhr_runtime.backends.openvino_runner import OpenVINORunner, openvino_unavailable_reason
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.selection import open_runner
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.card import ISLANDS
from tests.support.golden import golden, reference_input

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow

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
    islands = bundle.card.islands
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
    # its gate never passed, so auto passes it over without asking OpenVINO
    assert runner.name == "onnxruntime-cpu" and "openvino-bf16 not used: failed its gate" in why


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


# Search settings for the 4-frame test bundle.  A gate any INT8 model meets,
# over two layer groups (three candidates: each alone, then both); and one
# that none can (a 1000x speed-up), over one group.
MEETABLE = {"min_agreement": 0.5, "min_rank": -1.0, "min_speedup": 0.0, "timing_rounds": 1,
            "groups": ["frame_differences", "region_modelling"]}
UNMEETABLE = {"min_agreement": 1.0, "min_rank": 1.0, "min_speedup": 1000.0, "timing_rounds": 1,
              "groups": ["region_modelling"]}


def searched_bundle(source, footage, folder, settings: dict):
    """``source`` plus its INT8 model and gates, calibrated and judged on
    ``footage``: the export's reduced-precision step with ``settings``, run
    in a process of its own on a copy of the bundle (the model files
    hard-linked), so no second full export is needed."""
    folder.mkdir(parents=True)
    for path in source.iterdir():
        (shutil.copy if path.name == "mdhr.json" else os.link)(path, folder / path.name)
    code = ("import json, sys; from pathlib import Path; from mdhr_export.int8 import reduced_precision_step; "
            "from mdhr_export.int8_search import SearchSettings; from mdhr_runtime.bundle import load_bundle; "
            "folder = Path(sys.argv[1]); card = load_bundle(folder).card; "
            "settings = json.loads(sys.argv[3]); settings['groups'] = tuple(settings['groups']); "
            "reduced_precision_step(folder, card, Path(sys.argv[2]), True, print, SearchSettings(**settings))")
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(footage), json.dumps(settings)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return folder


@pytest.fixture(scope="module")
def int8_bundle(disfa_model_bundle, face_avi, tmp_path_factory):
    """The DISFA 4-frame session bundle with the INT8 model the search
    chose under a gate it can meet."""
    return searched_bundle(disfa_model_bundle, face_avi, tmp_path_factory.mktemp("int8") / "bundle", MEETABLE)


@pytest.fixture(scope="module")
def failing_int8_bundle(disfa_model_bundle, face_avi, tmp_path_factory):
    """The same, searched under a gate no INT8 model can meet."""
    return searched_bundle(disfa_model_bundle, face_avi, tmp_path_factory.mktemp("int8_failing") / "bundle",
                           UNMEETABLE)


def test_layer_groups_cover_every_node_once(disfa_model_bundle):
    from mdhr_runtime.backends.layer_groups import layer_groups

    bundle = load_bundle(disfa_model_bundle)
    model = ov.Core().read_model(str(bundle.artifact("onnx")))
    groups = layer_groups(model, {part: list(nodes) for part, nodes in bundle.card.islands.items()})
    assert [g.name for g in groups] == ["Backbone.stem", "Backbone.layer1", "Backbone.layer2", "Backbone.layer3",
                                        "Backbone.layer4", "frame_differences", "MFD", "region_modelling"]
    nodes = [n for g in groups for n in g.nodes]
    assert len(nodes) == len(set(nodes)) == len(model.get_ordered_ops())
    assert abs(sum(g.macs_share for g in groups) - 1) < 1e-3 and all(g.weighted_layers > 0 for g in groups)
    kinds = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    def convolutions(group):
        return sum(kinds[n] == "Convolution" for n in group.nodes)

    # ResNet-50's 53 convolutions in the backbone stages their weights name; the frame differences' 4
    assert [convolutions(g) for g in groups[:5]] == [1, 10, 13, 19, 10]
    assert convolutions(groups[5]) == 4 and groups[5].macs_share > 0.3


def test_int8_search_finds_a_model_that_passes_a_gate_it_can_meet(int8_bundle):
    card = load_bundle(int8_bundle).card.to_json()
    assert card["artifacts"]["openvino_int8"] == "model_int8.xml" and (int8_bundle / "model_int8.bin").is_file()
    assert not (int8_bundle / ".int8_candidates").exists()
    search = card["int8"]["search"]
    assert search["gate"] == {"min_agreement": 0.5, "min_rank_correlation": -1.0,
                              "min_speedup_vs_onnxruntime_fp32": 0.0}
    frontier = search["frontier"]
    assert [sorted(c["int8_groups"]) for c in frontier[:2]] == [["frame_differences"], ["region_modelling"]]
    assert sorted(frontier[2]["int8_groups"]) == ["frame_differences", "region_modelling"] and len(frontier) == 3
    assert all(c["passed"] and c["speedup_vs_onnxruntime"] > 0 for c in frontier)
    chosen = frontier[search["chosen"]]
    assert search["passed"] and chosen["speedup_vs_onnxruntime"] == max(c["speedup_vs_onnxruntime"] for c in frontier)
    # the card says which layers stayed float32: every group the chosen model does not quantise
    groups = [g["name"] for g in search["groups"]]
    assert card["int8"]["kept_fp32"] == [g for g in groups if g not in chosen["int8_groups"]]
    assert "Backbone.layer3" in card["int8"]["kept_fp32"]
    assert card["int8"]["kept_fp32_nodes"] == sum(g["nodes"] for g in search["groups"]
                                                  if g["name"] in card["int8"]["kept_fp32"])
    assert card["int8"]["speedup_vs_onnxruntime_at_export"] == chosen["speedup_vs_onnxruntime"]
    assert card["int8"]["calibration_clips"] == 3  # even clips of the 6 face windows; odd clips judge
    assert len(search["load_average"]["before"]) == 3
    gates = card["parity"]["reduced_precision"]
    assert gates["reference"] == "onnxruntime-fp32-cpu" and "odd clips" in gates["source"]
    assert gates["gate"] == "decisions at each AU's median agree on >= 50% of frames and every AU's rank " \
                            "correlation >= -1"
    fp32 = gates["runners"]["openvino"]
    assert fp32["status"] == "measured" and fp32["passed"] and fp32["au_max_abs_error"] <= 1e-4
    int8 = gates["runners"]["int8"]
    assert int8["status"] == "measured" and int8["clips"] == 3 and int8["frames"] == 12 and int8["passed"]
    assert set(int8["rank_correlation_per_au"]) == set(card["au_names"])
    # the shipped file is the chosen candidate: the gate measures what the search measured
    assert int8["median_decision_agreement"] == chosen["median_decision_agreement"]
    assert int8["au_max_abs_error"] == pytest.approx(chosen["au_max_abs_error"], rel=1e-3)
    bf16 = gates["runners"]["openvino-bf16"]
    assert bf16["status"] == ("skipped" if BF16_MISSING else "measured")
    print("int8 search:", [(c["int8_groups"], c["speedup_vs_onnxruntime"], c["median_decision_agreement"],
                            c["rank_correlation_min"]) for c in frontier])


@pytest.mark.skipif(BF16_MISSING, reason="this CPU has no native bf16")
def test_bf16_search_keeps_what_it_measured_float32(int8_bundle):
    """The export's bf16 search on a CPU with bf16: each searched group alone
    in bf16, then both; judged before timed; the runner keeps the chosen
    groups float32, and its gate measures that model."""
    from mdhr_runtime.backends.layer_groups import layer_groups

    typed = load_bundle(int8_bundle).card
    card = typed.to_json()
    gate = card["parity"]["reduced_precision"]["runners"]["openvino-bf16"]
    assert gate["status"] == "measured"
    if "skipped" in card["bf16"]:  # this CPU computes marked nodes in bf16 anyway: no search, the default islands
        assert "did not keep the marked nodes float32" in card["bf16"]["skipped"] and typed.bf16.kept_fp32 is None
        return
    search = card["bf16"]["search"]
    frontier = search["frontier"]
    assert [c["bf16_groups"] for c in frontier] == [["frame_differences"], ["region_modelling"],
                                                   ["frame_differences", "region_modelling"]]
    chosen = frontier[search["chosen"]]
    assert search["passed"] and chosen["passed"]
    # one passed, so only the candidates that passed agreement were timed
    assert all((c["speedup_vs_onnxruntime"] is not None) == c["passed_agreement"] for c in frontier)
    assert chosen["speedup_vs_onnxruntime"] == max(c["speedup_vs_onnxruntime"] for c in frontier if c["passed"])
    assert card["bf16"]["kept_fp32"] == chosen["fp32_groups"] == list(typed.bf16.kept_fp32)
    assert "Backbone.layer3" in card["bf16"]["kept_fp32"]
    bundle = load_bundle(int8_bundle)
    runner = OpenVINORunner(bundle, "openvino-bf16")
    try:
        model = ov.Core().read_model(str(bundle.artifact("onnx")))
        kept = sum(len(g.nodes) for g in layer_groups(model, card[ISLANDS]) if g.name in typed.bf16.kept_fp32)
        assert runner.fp32_nodes == kept
    finally:
        runner.close()
    assert gate["passed"] and gate["median_decision_agreement"] == chosen["median_decision_agreement"]


def test_int8_search_reports_failure_for_a_gate_it_cannot_meet(failing_int8_bundle):
    card = load_bundle(failing_int8_bundle).card.to_json()
    search = card["int8"]["search"]
    assert not search["passed"] and len(search["frontier"]) == 1 and search["chosen"] == 0
    only = search["frontier"][0]
    assert only["int8_groups"] == ["region_modelling"] and not only["passed"]
    # the best found is still written, and its gate entry says it failed and why
    assert (failing_int8_bundle / "model_int8.xml").is_file() and card["int8"]["kept_fp32"] == \
        [g["name"] for g in search["groups"] if g["name"] != "region_modelling"]
    int8 = card["parity"]["reduced_precision"]["runners"]["int8"]
    assert not int8["passed"] and "no INT8 candidate passed the gate at >= 1000x ONNX Runtime fp32" in \
        int8["failures"][-1]
    runner, why = open_runner(load_bundle(failing_int8_bundle), "auto")
    runner.close()
    assert runner.name == "onnxruntime-cpu" and "int8 not used: failed its gate: decisions agree on" in why


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


def test_auto_uses_a_passing_int8_model_and_follows_the_card(int8_bundle, tmp_path):
    runner, why = open_runner(load_bundle(int8_bundle), "auto")
    runner.close()
    assert runner.name == "int8" and "int8 passed its agreement gate" in why
    # the same bundle with a failed verdict recorded: auto follows the card
    flipped = tmp_path / "bundle"
    flipped.mkdir()
    for path in int8_bundle.iterdir():
        if path.name != "mdhr.json":
            os.link(path, flipped / path.name)
    card = json.loads((int8_bundle / "mdhr.json").read_text())
    for gate in card["parity"]["reduced_precision"]["runners"].values():
        gate["passed"] = False
    (flipped / "mdhr.json").write_text(json.dumps(card))
    runner, why = open_runner(load_bundle(flipped), "auto")
    runner.close()
    assert runner.name == "onnxruntime-cpu" and "int8 not used: failed its gate" in why


def test_forcing_a_runner_that_failed_its_gate_warns_in_one_line(failing_int8_bundle, face_avi, tmp_path):
    from mdhr_runtime.cli.run import main

    out = tmp_path / "int8.csv"
    result = CliRunner().invoke(main, [str(face_avi), "--model", str(failing_int8_bundle), "--out", str(out),
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
    gate = load_bundle(int8_bundle).card.report("parity")["reduced_precision"]["runners"]["int8"]
    assert rows["int8"]["export_gate"]["median_decision_agreement"] == gate["median_decision_agreement"]
    assert rows["onnxruntime"]["export_gate"] is None
    assert "speed-up vs onnxruntime" in result.output and "agreement vs fp32 (export gate)" in result.output
    search = json.loads(bench_path.read_text())["int8_search"]
    assert search["passed"] and len(search["candidates"]) == 3 and search["chosen"] in (0, 1, 2)
    assert "INT8 search at export: 3 candidates" in result.output and "frame_differences, region_modelling" in \
        result.output


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
    """The emulation behind the islands measurement (scripts.bundles_bf16_islands):
    numpy's rounding and the OpenVINO graph's both equal torch's bfloat16."""
    import openvino.opset13 as ops
    import torch

    from scripts.bundles_bf16_islands import _rounded, round_to_bf16

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
    """The FP16 emulation (scripts.bundles_fp16_islands): numpy's rounding and the
    OpenVINO graph's both equal numpy's float16, subnormals included, where
    a pair of Converts would have been removed by OpenVINO."""
    import openvino.opset13 as ops

    from scripts.bundles_bf16_islands import _rounded_fp16, round_to_fp16

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
    from scripts.bundles_fp16_islands import verdict

    def measured(median, rank):
        return {"median_decision_agreement": median, "rank_correlation_min": rank}

    nothing = measured(0.95, 0.990)
    cheap = {"nothing": nothing, "frame differences": measured(0.951, 0.9915),
             "region modelling": measured(0.955, 0.990), "frame differences and region modelling": measured(0.96, 0.99)}
    assert verdict(cheap)["keep_fp32"] == ["region_modelling"]  # 0.5 points of median agreement
    idle = {label: measured(0.9505, 0.9905) for label in cheap} | {"nothing": nothing}
    result = verdict(idle)
    assert result["keep_fp32"] == [] and result["buys"]["frame differences"]["median_decision_agreement"] == 0.0005
