"""TensorRT engine build, run and GPU parity, and the GPU probe: only where
an NVIDIA GPU (and, for engines, TensorRT) exists.  Elsewhere each test is
skipped with the reason; tests/export/test_tensorrt.py checks the same code paths
in every way that needs no GPU."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr.errors import MDHRError
from mdhr_runtime.backends.selection import tensorrt_unavailable_reason


def gpu_reason() -> str | None:
    from mdhr_runtime.backends.gpu import visible_gpu

    try:
        visible_gpu()
    except MDHRError as e:
        return str(e)
    return None


GPU_REASON = gpu_reason()
TRT_REASON = tensorrt_unavailable_reason()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"needs an NVIDIA GPU: {GPU_REASON}")
needs_tensorrt = pytest.mark.skipif(TRT_REASON is not None, reason=f"needs TensorRT on a GPU: {TRT_REASON}")
pytestmark = pytest.mark.gpu


@needs_gpu
def test_gpu_probe_names_the_gpu():
    from mdhr_runtime.backends.gpu import visible_gpu

    gpu = visible_gpu()
    major, minor = map(int, gpu.compute_capability.split("."))
    assert gpu.name.startswith("NVIDIA") and major >= 5 and minor >= 0
    assert float(gpu.driver) >= float(gpu.runtime) > 0
    print(gpu)


def build(folder, *flags):
    from mdhr_export.cli import build_main

    return CliRunner().invoke(build_main, [str(folder), *flags])


@pytest.fixture(scope="module")
def engine_bundle(bp4d_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trt") / "bundle"
    shutil.copytree(bp4d_bundle, folder)
    result = build(folder, "--fp16")
    assert result.exit_code == 0, result.output
    return folder


@needs_tensorrt
def test_engine_build_is_recorded_in_the_card(engine_bundle):
    card = json.loads((engine_bundle / "mdhr.json").read_text())
    assert card["artifacts"]["engine"] == "model.engine" and (engine_bundle / "model.engine").stat().st_size > 0
    built = card["engine_build"]
    assert built["onnx"] == "model_fp16.onnx" and built["precision"] == "fp16" and built["strongly_typed"] is True
    assert built["gpu"].startswith("NVIDIA") and built["compute_capability"] and built["tensorrt"]
    assert built["build_seconds"] > 0 and built["built_at"].endswith("Z")
    assert (engine_bundle / "timing.cache").stat().st_size > 0


@needs_tensorrt
def test_engine_fp16_parity_passes_the_gate(engine_bundle):
    report = json.loads((engine_bundle / "mdhr.json").read_text())["parity"]["tensorrt"]
    assert report["passed"] and report["failures"] == []
    assert report["au_decision_agreement"] >= 0.99 and report["median_decision_agreement"] >= 0.99
    assert report["region_argmax_agreement"] >= 0.99 and report["rank_correlation_min"] >= 0.99
    assert report["au_max_abs_error"] < 1e-2


@needs_tensorrt
def test_stage_engines_are_built_checked_and_streamed(engine_bundle):
    """The frame and clip stages as engines: gated like model.engine, and the
    detector's centred windows run them, agreeing with ONNX Runtime's."""
    from mdhr_export import parity
    from mdhr_runtime.backends.stages import StageRunner, official_windows
    from mdhr_runtime.bundle import load_bundle
    from mdhr_runtime.detector import AUDetector

    card = json.loads((engine_bundle / "mdhr.json").read_text())
    assert card["artifacts"]["frame_stage_engine"] == "frame_stage.engine"
    assert card["artifacts"]["clip_stage_engine"] == "clip_stage.engine"
    assert card["parity"]["tensorrt_stages"]["passed"]
    detector = AUDetector(engine_bundle, backend="tensorrt")
    assert detector.stage_runner.name == "tensorrt"
    clips = parity.parity_clips(1, 16)
    engine = parity.concat(official_windows(detector.stage_runner, clips))
    detector.close()
    onnx = StageRunner(load_bundle(engine_bundle), providers=["CPUExecutionProvider"])
    reference = parity.concat(official_windows(onnx, clips))
    onnx.close()
    assert np.abs(engine["au_scores"] - reference["au_scores"]).max() < 1e-2


@needs_tensorrt
def test_auto_runs_the_engine_with_the_card_s_precision(engine_bundle):
    from mdhr_runtime.backends.runners import OnnxRuntimeRunner
    from mdhr_runtime.backends.selection import open_runner
    from mdhr_runtime.bundle import load_bundle

    bundle = load_bundle(engine_bundle)
    runner, why = open_runner(bundle, "auto")
    assert runner.name == "tensorrt" and runner.precision == "fp16", why
    clips = np.random.default_rng(0).standard_normal(bundle.input_shape, dtype=np.float32)
    reference = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"]).infer(clips)
    assert np.abs(runner.infer(clips)["au_scores"] - reference["au_scores"]).max() < 1e-2
    runner.close()
    runner.close()  # twice is harmless


@needs_tensorrt
def test_fp32_engine_meets_the_fp32_tolerance(engine_bundle, tmp_path):
    folder = tmp_path / "fp32"
    shutil.copytree(engine_bundle, folder)
    result = build(folder, "--fp32")
    assert result.exit_code == 0, result.output
    card = json.loads((folder / "mdhr.json").read_text())
    assert card["engine_build"]["onnx"] == "model.onnx" and card["engine_build"]["precision"] == "fp32"
    assert card["parity"]["tensorrt"]["au_max_abs_error"] <= 1e-4


@needs_tensorrt
def test_engine_from_another_tensorrt_is_refused(engine_bundle, tmp_path):
    from mdhr_runtime.backends.selection import open_runner
    from mdhr_runtime.bundle import load_bundle

    folder = tmp_path / "other"
    shutil.copytree(engine_bundle, folder)
    card = json.loads((folder / "mdhr.json").read_text())
    card["engine_build"]["tensorrt"] = "10.12.0.36"
    (folder / "mdhr.json").write_text(json.dumps(card))
    with pytest.raises(MDHRError, match=r"built with TensorRT 10.12.0.36 .* rebuild it here with: mdhr-build"):
        open_runner(load_bundle(folder), "tensorrt")


@needs_tensorrt
def test_damaged_engine_is_refused_and_freed(engine_bundle, tmp_path):
    from mdhr_runtime.backends.selection import open_runner
    from mdhr_runtime.bundle import load_bundle

    folder = tmp_path / "damaged"
    shutil.copytree(engine_bundle, folder)
    (folder / "model.engine").write_bytes(b"not an engine" * 100)
    for _ in range(3):  # a leak of device memory or contexts would show as a failure here
        with pytest.raises(MDHRError, match="cannot load this engine"):
            open_runner(load_bundle(folder), "tensorrt")
