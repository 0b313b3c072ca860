"""TensorRT engine build, run and FP16 parity: only where TensorRT and an
NVIDIA GPU exist.  Elsewhere every test here is skipped with the reason."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr_runtime.runners import tensorrt_unavailable_reason

REASON = tensorrt_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT on a GPU: {REASON}")]


@pytest.fixture(scope="module")
def engine_bundle(disfa_short_bundle, tmp_path_factory):
    import shutil

    from mdhr_export.cli import build_main

    folder = tmp_path_factory.mktemp("trt") / "bundle"
    shutil.copytree(disfa_short_bundle, folder)
    result = CliRunner().invoke(build_main, [str(folder), "--fp16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


def test_engine_is_recorded_with_its_build(engine_bundle):
    card = json.loads((engine_bundle / "mdhr.json").read_text())
    assert card["artifacts"]["engine"] == "model.engine" and (engine_bundle / "model.engine").stat().st_size > 0
    assert card["engine_build"]["fp16"] is True and card["engine_build"]["fp32_layers"]
    assert (engine_bundle / "timing.cache").is_file()


def test_engine_fp16_parity(engine_bundle):
    card = json.loads((engine_bundle / "mdhr.json").read_text())
    report = card["parity"]["tensorrt"]
    assert report["au_decision_agreement"] >= 0.99
    assert report["au_max_abs_error"] < 1e-2


def test_engine_runner_matches_onnxruntime(engine_bundle):
    from mdhr_runtime.bundle import load_bundle
    from mdhr_runtime.runners import OnnxRuntimeRunner, open_runner

    bundle = load_bundle(engine_bundle)
    runner, why = open_runner(bundle, "auto")
    assert runner.name == "tensorrt", why
    clips = np.random.default_rng(0).standard_normal(bundle.input_shape, dtype=np.float32)
    reference = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"]).infer(clips)
    assert np.abs(runner.infer(clips)["au_scores"] - reference["au_scores"]).max() < 1e-2
    runner.close()
