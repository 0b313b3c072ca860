"""The TensorRT path checked in every way that needs no GPU: no API that
TensorRT 11 removed, the Polygraphy loaders as composed (never called: a
TensorRT Builder made without a GPU kills the process), the parity run
through Polygraphy's Comparator (on ONNX Runtime), the GPU probe on the real
CUDA runtime library, and every refusal.  tests/export/test_gpu.py builds and runs
engines where TensorRT and a GPU exist."""
import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mdhr.errors import MDHRError
from mdhr_export import parity
from mdhr_export.build import ENGINE_FILE, comparator_outputs, engine_source
from mdhr_export.cli import build_main
from mdhr_export.engine import WORKSPACE_BYTES, describe_parse_failure, engine_loader
from mdhr_runtime.backends.gpu import Gpu
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.selection import open_runner, tensorrt_unavailable_reason
from mdhr_runtime.backends.tensorrt_runner import engine_mismatch
from mdhr_runtime.bundle import load_bundle, seal
from mdhr_runtime.card import EngineBuild
from tests.support import ROOT

PACKAGES = ("mdhr", "export", "runtime", "benchmarks")

# Python APIs that TensorRT 11 removed (NVIDIA's "TensorRT 10.x to 11.x Python
# API" migration reference, checked against 11.4) or 10.0 removed earlier, and
# Polygraphy's switches that call them.
REMOVED_TENSORRT_API = [
    r"BuilderFlag\.(FP16|INT8|FP8|BF16|INT4|FP4|OBEY_PRECISION_CONSTRAINTS|PREFER_PRECISION_CONSTRAINTS|DIRECT_IO)",
    r"\b(OBEY|PREFER)_PRECISION_CONSTRAINTS\b", r"\bset_output_type\b", r"\breset_output_type\b",
    r"\boutput_type_is_set\b", r"\breset_precision\b", r"\bprecision_is_set\b", r"\blayer\.precision\b",
    r"\bint8_calibrator\b", r"\b(set|get)_calibration_profile\b", r"\bquantization_flags?\b",
    r"\bplatform_has_fast_(fp16|int8)\b", r"\bdevice_memory_size\b(?!_)", r"\bbuilder\.build_engine\b",
    r"\bEXPLICIT_BATCH\b", r"\bIAlgorithmSelector\b", r"\bSetLayerPrecisions\b",
]
WEAKLY_TYPED_POLYGRAPHY_ARGS = {"fp16", "int8", "bf16", "fp8", "int4", "fp4", "precision_constraints", "calibrator"}


def removed_api_uses(source: str) -> list[str]:
    found = [m.group(0) for pattern in REMOVED_TENSORRT_API for m in re.finditer(pattern, source)]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "CreateConfig":
            found += [f"CreateConfig({k.arg}=...)" for k in node.keywords if k.arg in WEAKLY_TYPED_POLYGRAPHY_ARGS]
    return found


def test_no_api_that_tensorrt_11_removed():
    uses = {str(path.relative_to(ROOT)): removed_api_uses(path.read_text())
            for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    assert {path: names for path, names in uses.items() if names} == {}


def test_the_removed_api_guard_catches_weakly_typed_code():
    weakly_typed = ("config.set_flag(trt.BuilderFlag.FP16)\n"
                    "config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)\n"
                    "layer.precision = trt.float32\nlayer.set_output_type(0, trt.float32)\n"
                    "CreateConfig(fp16=True, precision_constraints='obey')\n")
    assert removed_api_uses(weakly_typed) == [
        "BuilderFlag.FP16", "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS",
        "set_output_type", "layer.precision", "CreateConfig(fp16=...)", "CreateConfig(precision_constraints=...)"]


@pytest.mark.parametrize("precision, onnx_file", [("fp16", "model_fp16.onnx"), ("fp32", "model.onnx")])
def test_engine_loaders_are_strongly_typed_from_the_precision_s_onnx(bp4d_bundle, tmp_path, precision, onnx_file):
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    bundle = load_bundle(bp4d_bundle)
    source = engine_source(bundle, precision)
    assert source == bp4d_bundle / onnx_file
    cache = tmp_path / "timing.cache"
    loader = engine_loader(source, cache)
    assert isinstance(loader, EngineBytesFromNetwork)
    network, config = loader._network, loader._config
    assert isinstance(network, NetworkFromOnnxPath)
    assert network.strongly_typed is True and network.path == str(source)
    assert isinstance(config, CreateConfig)
    # strongly typed: no precision switch at all, the ONNX's types decide
    assert not (config.fp16 or config.int8 or config.bf16 or config.fp8 or config.tf32)
    assert config.precision_constraints is None
    assert config.memory_pool_limits.nbytes == WORKSPACE_BYTES
    assert config.timing_cache_path == str(cache) and loader.timing_cache_path == str(cache)


def test_fp16_engine_needs_the_fp16_onnx(disfa_short_bundle):
    with pytest.raises(MDHRError, match=r"no fp16 ONNX in this bundle.*mdhr-export ... --target gpu \(or all\) --fp16"):
        engine_source(load_bundle(disfa_short_bundle), "fp16")


def test_parity_runs_through_polygraphy_s_comparator(bp4d_bundle):
    """The build's parity step on what this machine has: Polygraphy's
    Comparator running the fp32 ONNX and the FP16 ONNX on ONNX Runtime CPU,
    in place of the engine."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    bundle = load_bundle(bp4d_bundle)
    runners = [OnnxrtRunner(SessionFromOnnx(str(bundle.artifact(kind)), providers=["cpu"]), name=kind)
               for kind in ("onnx", "onnx_fp16")]
    fp32, fp16 = comparator_outputs(runners, bundle)
    clips = parity.parity_clips(bundle.batch, bundle.frames)
    ours = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"])
    direct = parity.runner_outputs(ours, clips)
    ours.close()
    assert fp32.keys() == direct.keys() and fp32["au_scores"].shape == (3, 16, 12)
    for name in direct:
        np.testing.assert_allclose(fp32[name], direct[name], atol=1e-5)
    report = parity.agreement(fp32, fp16, bundle.threshold, bundle.au_names)
    # 2.5e-4 where ONNX Runtime emulates FP16 through casts (AVX2/AVX-512
    # hosts), 1.4e-2 on a Xeon with AVX512-FP16, whose kernels compute in FP16
    assert 0 < report["au_max_abs_error"] < 5e-2
    assert set(report["median_decision_agreement_per_au"]) == set(bundle.au_names)
    assert report["rank_correlation_min"] is not None
    assert parity.fp32_failures(report) != []  # FP16 is not fp32-exact: the fp32 gate would refuse it
    print("FP16 ONNX (CPU) vs fp32 through the Comparator:", {k: report[k] for k in (
        "au_max_abs_error", "au_decision_agreement", "median_decision_agreement", "region_argmax_agreement",
        "rank_correlation_min")})


def test_reduced_precision_gate_names_each_failure():
    report = {"au_decision_agreement": 1.0, "median_decision_agreement": 0.95, "region_argmax_agreement": 0.98,
              "rank_correlation_min": 0.9}
    assert parity.reduced_precision_failures(report) == [
        "AU decisions at the median reference score agree on 95.00% < 99.00%",
        "region argmax agree on 98.00% < 99.00%", "AU rank correlation 0.900 < 0.99"]
    assert parity.reduced_precision_failures({**report, "median_decision_agreement": 0.995,
                                              "region_argmax_agreement": 1.0, "rank_correlation_min": 0.995}) == []


H100 = Gpu(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", driver="13.0", runtime="13.0")


def test_engine_from_another_gpu_or_tensorrt_is_refused_with_the_reason():
    built = {"tensorrt": "11.4.0.106", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert engine_mismatch(built, "11.4.0.106", H100) is None
    assert engine_mismatch(built, "10.13.3.9", H100) == (
        "it was built with TensorRT 11.4.0.106 and this machine has 10.13.3.9")
    l4 = Gpu(name="NVIDIA L4", compute_capability="8.9", driver="13.0", runtime="13.0")
    assert engine_mismatch(built, "11.4.0.106", l4) == "it was built with GPU NVIDIA H100 80GB HBM3 and this machine has NVIDIA L4"


class ParserErrorStandIn:
    """TensorRT cannot be installed here; this stands in for its IParserError
    (the four methods describe_parse_failure reads)."""

    def __init__(self, node, name, operator, desc):
        self._values = node, name, operator, desc

    def node(self):
        return self._values[0]

    def node_name(self):
        return self._values[1]

    def node_operator(self):
        return self._values[2]

    def desc(self):
        return self._values[3]


class ParserStandIn:
    def __init__(self, errors):
        self.errors = errors
        self.num_errors = len(errors)

    def get_error(self, i):
        return self.errors[i]


def test_parse_failure_names_the_onnx_node():
    parser = ParserStandIn([ParserErrorStandIn(41, "/dynamics/Sub_2", "Sub", "type mismatch: float16 and float32")])
    line = describe_parse_failure(Path("b/model_fp16.onnx"), parser)
    assert line.startswith("b/model_fp16.onnx: TensorRT cannot parse the ONNX graph: node /dynamics/Sub_2 (Sub): "
                           "type mismatch")
    assert "\n" not in line
    unnamed = describe_parse_failure(Path("m.onnx"), ParserStandIn([ParserErrorStandIn(7, "", "Conv", "bad")]))
    assert "node #7 (Conv): bad" in unnamed


def cuda_runtime_or_skip():
    from mdhr_runtime.backends.gpu import cuda_runtime_library

    try:
        return cuda_runtime_library()
    except MDHRError as e:
        pytest.skip(f"no CUDA runtime library to ask here: {e}")


def test_cuda_errors_are_named_by_the_cuda_runtime():
    from mdhr_runtime.backends.gpu import error_name

    library = cuda_runtime_or_skip()
    assert error_name(library, 35).startswith("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    assert error_name(library, 100).startswith("cudaErrorNoDevice: ")


def test_cuda_13_runtime_wheel_is_found_where_polygraphy_does_not_look():
    from mdhr_runtime.backends.gpu import cuda_runtime_library, cuda_wheel_library_dirs

    dirs = cuda_wheel_library_dirs()
    if not dirs:
        pytest.skip("the nvidia-cuda-runtime (CUDA 13) wheel is not installed here")
    assert all(Path(d).parts[-3:] == ("nvidia", "cu13", "lib") for d in dirs)
    assert Path(cuda_runtime_library()._name).parent == Path(dirs[0])


def test_gpu_probe_on_this_machine_says_why_there_is_none():
    from mdhr_runtime.backends.gpu import driver_present, visible_gpu

    cuda_runtime_or_skip()
    if driver_present():
        pytest.skip("an NVIDIA driver is installed here")
    with pytest.raises(MDHRError, match=r"^no NVIDIA driver is installed \(libcuda.so.1 not found; CUDA says "
                                        r"cudaErrorInsufficientDriver: "):
        visible_gpu()


def probe_in_subprocess(setup: str) -> str:
    """tensorrt_unavailable_reason() in a fresh interpreter after ``setup``."""
    code = f"{setup}\nfrom mdhr_runtime.backends.selection import tensorrt_unavailable_reason\nprint(tensorrt_unavailable_reason())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT and a GPU are here")
def test_unavailable_reasons_in_order():
    assert tensorrt_unavailable_reason().startswith("TensorRT is not installed (pip install 'mdhr-toolkit[gpu]'")
    # TensorRT cannot be installed here: a module with only a version stands
    # in for it, which is all the version check reads.
    fake = "import sys, types; sys.modules['tensorrt'] = types.SimpleNamespace(__version__={!r})"
    assert probe_in_subprocess(fake.format("10.8.0.43")).startswith(
        "TensorRT 10.8.0.43 is too old: strongly typed engines need 10.12 or newer")
    assert probe_in_subprocess(fake.format("11.4.0.106") + "; sys.modules['polygraphy'] = None").startswith(
        "Polygraphy is not installed (pip install 'mdhr-toolkit[gpu]')")
    # with TensorRT and Polygraphy, what remains is the GPU probe's answer
    from mdhr_runtime.backends.gpu import visible_gpu

    try:
        visible_gpu()
        here = None
    except MDHRError as e:
        here = str(e)
    assert probe_in_subprocess(fake.format("11.4.0.106")) == str(here)


def test_build_on_a_missing_bundle_says_the_bundle_is_missing(tmp_path):
    result = CliRunner().invoke(build_main, [str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope'}: no such bundle folder; create one with mdhr-export"


def test_build_without_gpu_says_where_to_run(bp4d_bundle):
    before = (bp4d_bundle / "mdhr.json").read_text()
    for flag in ("--fp16", "--fp32"):
        result = CliRunner().invoke(build_main, [str(bp4d_bundle), flag])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot build a TensorRT engine here: ")
        assert lines[0].endswith("run mdhr-build on the target GPU machine")
    assert (bp4d_bundle / "mdhr.json").read_text() == before and not (bp4d_bundle / ENGINE_FILE).exists()


def test_build_fp16_on_a_bundle_without_fp16_says_how_to_export(disfa_short_bundle):
    result = CliRunner().invoke(build_main, [str(disfa_short_bundle), "--fp16"])
    assert result.exit_code == 2
    assert "no fp16 ONNX in this bundle to build the engine from; this bundle was exported for target all; " \
        "export it with mdhr-export ... --target gpu (or all) --fp16" in result.output


def test_forced_tensorrt_backend_says_why_not(bp4d_bundle):
    with pytest.raises(MDHRError, match="backend tensorrt is unavailable: TensorRT is not installed"):
        open_runner(load_bundle(bp4d_bundle), "tensorrt")
    runner, why = open_runner(load_bundle(bp4d_bundle), "auto")
    assert runner.name == "onnxruntime-cpu" and "TensorRT unavailable: TensorRT is not installed" in why
    runner.close()


def test_gpu_extra_is_the_strongly_typed_set():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["tensorrt>=10.12", "polygraphy>=0.53.6", "nvidia-cuda-runtime>=13"]
    assert not any("cuda-python" in line for lines in extras.values() for line in lines)


def test_tools_take_the_engine_s_precision_from_the_card(bp4d_bundle):
    from mdhr_bench.backends import BACKENDS, for_bundle
    from mdhr_runtime.bundle import Bundle
    from mdhr_runtime.card import EngineBuild

    card = load_bundle(bp4d_bundle).card
    for precision, reduced in (("fp32", False), ("fp16", True)):
        bundle = Bundle(bp4d_bundle, dataclasses.replace(card, engine_build=EngineBuild(precision, {})))
        backend = for_bundle(BACKENDS["tensorrt"], bundle)
        assert backend.precision == precision and backend.reduced_precision is reduced
    assert for_bundle(BACKENDS["onnxruntime"], bundle) is BACKENDS["onnxruntime"]


class EngineStandIn:
    """Stands in for a TensorRT engine, which needs a GPU: the "engine" file
    holds the ONNX it was built from (see ``onnx_as_engine``) and runs in
    ONNX Runtime, off by ``error`` on every output (a broken build)."""

    error = 0.0

    def __init__(self, bundle, kind):
        from mdhr_runtime.backends.sessions import onnx_session

        self.session = onnx_session(bundle.artifact(kind), providers=["CPUExecutionProvider"])

    def run(self, names, feeds, run_options=None):
        return [out + np.float32(self.error) for out in self.session.run(names, feeds)]

    def close(self):
        self.session = None


def onnx_as_engine(source, timing_cache):
    return source.read_bytes(), 0.0


@pytest.fixture
def stage_engine_folder(disfa_short_bundle, tmp_path, monkeypatch):
    """A bundle to build stage engines in (its ONNX linked, its card copied),
    with the two GPU-only pieces, the TensorRT build and runtime, stood in
    for as above; and the fp32 ONNX's outputs on the parity clips."""
    import mdhr_export.build as build
    import mdhr_runtime.backends.tensorrt_runner as tensorrt_runner

    folder = tmp_path / "bundle"
    folder.mkdir()
    for path in disfa_short_bundle.iterdir():
        if path.suffix == ".onnx":
            os.link(path, folder / path.name)  # a bundle holds its files: no symlinks
        elif path.suffix == ".bin":  # a copy: ONNX Runtime refuses a symlink leading elsewhere, onnx hard links
            shutil.copy(path, folder / path.name)
        else:
            (folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(build, "build_engine", onnx_as_engine)
    monkeypatch.setattr(tensorrt_runner, "EngineSession", EngineStandIn)
    bundle = load_bundle(folder)
    runner = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"])
    reference = parity.runner_outputs(runner, parity.parity_clips(bundle.batch, bundle.frames))
    runner.close()
    card = dataclasses.replace(bundle.card, engine_build=EngineBuild.from_json({"precision": "fp32"}))
    return folder, card, reference


def test_stage_engines_are_kept_when_the_stages_agree(stage_engine_folder):
    from mdhr_export.build import STAGE_ENGINE_FILES, build_stage_engines
    from mdhr_runtime.backends.stages import StageRunner, has_stage_engines
    from mdhr_runtime.bundle import Bundle

    folder, card, reference = stage_engine_folder
    built = build_stage_engines(folder, card, "fp32", reference)
    assert built.report["passed"] and built.report["au_max_abs_error"] < 1e-5
    assert built.files == STAGE_ENGINE_FILES
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".engine") == ["clip_stage.engine",
                                                                                  "frame_stage.engine"]
    bundle = Bundle(folder, seal(folder, card, built.files))
    assert has_stage_engines(bundle)
    runner = StageRunner(bundle, engines=True)
    assert runner.name == "tensorrt" and isinstance(runner.frame_session, EngineStandIn)
    runner.close()


def test_stage_engines_that_disagree_are_not_kept(stage_engine_folder):
    from mdhr_export.build import build_stage_engines

    folder, card, reference = stage_engine_folder
    before = sorted(p.name for p in folder.iterdir())
    EngineStandIn.error = 0.3
    try:
        with pytest.raises(MDHRError, match=r"the TensorRT engines of the frame and clip stages \(fp32\) failed the "
                                            r"parity gate against the fp32 ONNX \(AU score error .*\); not kept$"):
            build_stage_engines(folder, card, "fp32", reference)
    finally:
        EngineStandIn.error = 0.0
    assert sorted(p.name for p in folder.iterdir()) == before  # no engine, no staging left
