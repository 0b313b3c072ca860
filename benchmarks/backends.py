"""The backends the benchmark and parity tools know, whether each can run
here (and why not), and how to open one as a runner.

Every backend is opened as an object of the runtime's ``Runner`` protocol
(``infer(clips) -> {output: array}``, numpy in and out), so every backend is
timed and compared on the same terms, host copies included.
"""
from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import replace
from pathlib import Path

from mdhr.errors import BackendUnavailable, InputError, MDHRError
from mdhr_bench.machine import cpu_flags
from mdhr_runtime.backends.openvino_runner import OpenVINORunner, openvino_unavailable_reason
from mdhr_runtime.backends.runners import OnnxRuntimeRunner, Runner
from mdhr_runtime.backends.selection import open_runner, tensorrt_unavailable_reason
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.choices import BACKEND_TABLE, BackendSpec

NO_CHECKPOINT = "no checkpoint given (the PyTorch backends run the checkpoint the bundle was exported from)"


# The benchmarks time and compare every backend of the one table.
Backend = BackendSpec
BACKENDS = {b.name: b for b in BACKEND_TABLE}
TORCH_FP32 = BACKENDS["torch"]
ONNXRUNTIME_FP32 = BACKENDS["onnxruntime"]

CPU_FP16_EMULATION = "cpu-fp16-emulated"


def for_bundle(backend: Backend, bundle: Bundle) -> Backend:
    """``backend`` as it runs on ``bundle``: a TensorRT engine computes in the
    precision it was built with (its card says fp16 or fp32)."""
    if backend.family != "tensorrt":
        return backend
    built = bundle.card.engine_build
    return replace(backend, precision=built.precision if built else backend.precision)


def parse_backends(text: str | None) -> list[Backend]:
    """Backends named in a comma-separated list (all of them when None)."""
    if text is None:
        return list(BACKENDS.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise InputError(f"unknown backend {', '.join(unknown) or '(none given)'}: choose from "
                         f"{', '.join(BACKENDS)} (comma-separated)")
    return [BACKENDS[n] for n in dict.fromkeys(names)]


def unavailable_reason(backend: Backend, bundle: Bundle, ckpt: Path | None,
                       cpu_fp16_estimate: bool = False) -> str | None:
    """Why ``backend`` cannot run, from cheap checks (nothing is loaded);
    ``open_backend`` may still find a reason that only loading reveals.
    ``cpu_fp16_estimate`` lets the FP16 ONNX run emulated on the CPU provider:
    meaningful for accuracy, meaningless for speed."""
    if backend.family == "torch":
        if ckpt is None:
            return NO_CHECKPOINT
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed (pip install 'mdhr-toolkit[export]')"
        from mdhr_bench.torch_runner import default_device

        return torch_precision_reason(backend.precision, default_device())
    if backend.family == "tensorrt":
        reason = tensorrt_unavailable_reason()
        engine = bundle.artifact("engine")
        if reason is None and (engine is None or not engine.is_file()):
            reason = f"the bundle has no TensorRT engine (build one with: mdhr-build {bundle.root} --fp16)"
        return reason
    if backend.family == "openvino":
        return openvino_unavailable_reason(backend.name, bundle)
    return _onnxruntime_reason(backend, bundle, cpu_fp16_estimate)


def _onnxruntime_reason(backend: Backend, bundle: Bundle, cpu_fp16_estimate: bool) -> str | None:
    import onnxruntime as ort

    if backend.precision == "fp16":
        path = bundle.artifact("onnx_fp16")
        if backend.provider != "TensorrtExecutionProvider" and (path is None or not path.is_file()):
            return "the bundle has no FP16 ONNX (export with: mdhr-export ... --fp16)"
    available = ort.get_available_providers()
    if backend.provider in available:
        return None
    if backend.name == "onnxruntime-fp16" and cpu_fp16_estimate:
        return None
    short = {"CUDAExecutionProvider": "CUDA", "TensorrtExecutionProvider": "TensorRT"}[backend.provider]
    if backend.name == "onnxruntime-fp16":
        return ("needs ONNX Runtime's CUDA provider (onnxruntime-gpu and an NVIDIA GPU); on the CPU "
                "provider FP16 is only emulated through casts, slower than fp32")
    return f"ONNX Runtime has no {short} provider here (install onnxruntime-gpu on an NVIDIA GPU machine)"


def open_backend(backend: Backend, bundle: Bundle, ckpt: Path | None, threads: int | None = None,
                 cpu_fp16_estimate: bool = False) -> Runner:
    """A ready runner for ``backend``; raises BackendUnavailable with the reason."""
    reason = unavailable_reason(backend, bundle, ckpt, cpu_fp16_estimate)
    if reason:
        raise BackendUnavailable(reason)
    if backend.family == "torch":
        return _open_torch(backend, bundle, ckpt, threads)
    if backend.family == "tensorrt":
        try:
            runner, _why = open_runner(bundle, "tensorrt")
        except MDHRError as e:  # e.g. an engine built for another GPU
            raise BackendUnavailable(str(e)) from None
        return runner
    if backend.family == "openvino":
        try:
            return OpenVINORunner(bundle, backend.name, threads)
        except MDHRError as e:  # e.g. bf16 not honoured when compiled
            raise BackendUnavailable(str(e)) from None
    return _open_onnxruntime(backend, bundle, threads)


def _open_torch(backend: Backend, bundle: Bundle, ckpt: Path, threads: int | None) -> Runner:
    import torch

    from mdhr_bench.torch_runner import TorchRunner

    if threads:
        torch.set_num_threads(threads)
    return TorchRunner.from_checkpoint(ckpt, bundle, backend.precision)


def torch_precision_reason(precision: str, device) -> str | None:
    """Why autocast at ``precision`` would not be a real speed-up on ``device``."""
    import torch

    if precision == "fp16" and device.type != "cuda":
        return "fp16 autocast needs a CUDA GPU (on this CPU use torch-bf16)"
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        if device.type == "cpu" and not cpu_has_native_bf16():
            return "this CPU has no native bfloat16 (AVX-512 BF16 or AMX); autocast would only emulate it"
    return None


def cpu_has_native_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: fall back to the CPU's flags

        return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def _open_onnxruntime(backend: Backend, bundle: Bundle, threads: int | None) -> Runner:
    import onnxruntime as ort

    provider = backend.provider
    if provider not in ort.get_available_providers():  # the FP16 estimate on CPU
        provider = "CPUExecutionProvider"
    providers: list = [provider]
    model_precision = backend.precision
    if provider == "TensorrtExecutionProvider":
        # ONNX Runtime builds the engine itself from the fp32 ONNX, in FP16,
        # and caches it (the first session creation takes minutes).
        cache = Path(tempfile.gettempdir()) / "mdhr-ort-tensorrt-cache"
        providers = [(provider, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                 "trt_engine_cache_path": str(cache)}), "CUDAExecutionProvider"]
        model_precision = "fp32"
    runner = OnnxRuntimeRunner(bundle, model_precision, providers=providers, threads=threads)
    used = runner.session.get_providers()[0]
    if used != provider:  # ONNX Runtime falls back silently when a GPU provider cannot start
        runner.close()
        raise BackendUnavailable(f"{provider} could not start (ONNX Runtime fell back to {used}); "
                                 "is a GPU with a matching CUDA/TensorRT visible?")
    return runner


def device_of(runner: Runner) -> str:
    """Where a runner computes, for reports."""
    device = getattr(runner, "device", None)
    if device is not None and hasattr(device, "type"):  # torch
        return device.type
    if isinstance(device, str):  # OpenVINO
        return device
    session = getattr(runner, "session", None)
    if session is not None:
        used = session.get_providers()[0].removesuffix("ExecutionProvider").lower()
        return CPU_FP16_EMULATION if used == "cpu" and runner.precision == "fp16" else used
    return "cuda"  # the TensorRT engine
