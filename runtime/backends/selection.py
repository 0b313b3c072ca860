"""Which runner a run gets: ``auto``'s order, the agreement gates, and what
each backend needs of the machine.  Choosing opens nothing; ``open_choice``
opens the chosen runner (the whole-model graph), which a run asks for only
when official windows need it.

``auto`` prefers a TensorRT engine (fastest on NVIDIA GPUs), then (without a
GPU for ONNX Runtime) a reduced-precision CPU runner (INT8, then OpenVINO
bf16) whose agreement with fp32 passed its gate at export and that can run
here, then ONNX Runtime.
"""
from __future__ import annotations

from dataclasses import dataclass

from mdhr.errors import BackendUnavailable, InputError, MDHRError, param
from mdhr_runtime.backends.gates import GATED_CPU_BACKENDS, forced_warning, passed
from mdhr_runtime.backends.gpu import visible_gpu
from mdhr_runtime.backends.openvino_runner import OPENVINO_BACKENDS, OpenVINORunner, openvino_unavailable_reason
from mdhr_runtime.backends.runners import OnnxRuntimeRunner, Runner
from mdhr_runtime.backends.tensorrt_runner import TensorRTRunner
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.choices import BACKENDS

MIN_TENSORRT = (10, 12)  # strongly typed ONNX networks as built by mdhr-build


@dataclass(frozen=True)
class Choice:
    """A backend chosen for a bundle, and why; ``name`` as reports call the
    runner once open (onnxruntime-cpu, tensorrt, openvino-bf16, ...)."""

    backend: str
    name: str
    why: str
    precision: str | None = None  # ONNX Runtime's graph: fp32 or fp16


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot run here, or None when it can.  Asks
    the CUDA runtime library, never TensorRT itself: a TensorRT Builder or
    Runtime made without a GPU kills the process."""
    try:
        import tensorrt
    except ImportError:
        return "TensorRT is not installed (pip install 'mdhr-toolkit[gpu]' on an NVIDIA GPU machine)"
    version = tuple(int(p) for p in tensorrt.__version__.split(".")[:2])
    if version < MIN_TENSORRT:
        return (f"TensorRT {tensorrt.__version__} is too old: strongly typed engines need "
                f"{'.'.join(map(str, MIN_TENSORRT))} or newer (pip install -U 'mdhr-toolkit[gpu]')")
    try:
        visible_gpu()  # also says when Polygraphy or libcudart is missing
    except MDHRError as e:
        return str(e)
    return None


def onnxruntime_has_gpu() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def default_onnx_precision(bundle: Bundle) -> str:
    """FP16 where a CUDA GPU runs it and the bundle has it; float32 on CPU
    (ONNX Runtime's CPU kernels gain nothing from FP16) unless the bundle
    holds only the GPU's graphs."""
    has_fp16 = bundle.artifact("onnx_fp16") is not None
    return "fp16" if has_fp16 and (onnxruntime_has_gpu() or bundle.artifact("onnx") is None) else "fp32"


def choose_backend(bundle: Bundle, backend: str = "auto", precision: str | None = None) -> Choice:
    """The backend a run of ``bundle`` uses, and why; a forced backend that
    cannot run here is refused now, before any graph opens."""
    if backend not in BACKENDS:
        raise InputError(f"unknown {param('backend')} {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend in OPENVINO_BACKENDS:
        reason = openvino_unavailable_reason(backend, bundle)
        if reason:
            raise BackendUnavailable(f"{param('backend')} {backend} is unavailable: {reason}")
        warning = forced_warning(bundle, backend)
        return Choice(backend, backend, f"OpenVINO ({backend}); forced" + (f"; {warning}" if warning else ""))
    why_not: list[str] = []
    if backend in ("auto", "tensorrt"):
        reason = tensorrt_unavailable_reason()
        engine = bundle.artifact("engine")
        if reason is None and (engine is None or not engine.is_file()):
            reason = f"the bundle has no TensorRT engine (build one with: mdhr-build {bundle.root} --fp16)"
        if reason is None:
            built = bundle.card.engine_build.precision if bundle.card.engine_build else "unknown"
            return Choice("tensorrt", "tensorrt", f"TensorRT {built} engine found and a CUDA GPU is visible")
        if backend == "tensorrt":
            raise BackendUnavailable(f"{param('backend')} tensorrt is unavailable: {reason}")
        why_not.append(f"TensorRT unavailable: {reason}")
        if not onnxruntime_has_gpu():  # a GPU outruns any CPU runner
            chosen, cpu_why = gated_cpu_backend(bundle)
            why_not += cpu_why
            if chosen is not None:
                return Choice(chosen, chosen, f"OpenVINO ({chosen}); " + "; ".join(why_not))
    name = "onnxruntime-" + ("cuda" if onnxruntime_has_gpu() else "cpu")
    why = "forced" if backend == "onnxruntime" else "; ".join(why_not)
    return Choice("onnxruntime", name, f"ONNX Runtime ({name}); {why}", precision or default_onnx_precision(bundle))


def open_choice(bundle: Bundle, choice: Choice, threads: int | None = None) -> Runner:
    """The runner of a choice, with the whole-model graph open."""
    if choice.backend in OPENVINO_BACKENDS:
        return OpenVINORunner(bundle, choice.backend, threads=threads)
    if choice.backend == "tensorrt":
        return TensorRTRunner(bundle)
    return OnnxRuntimeRunner(bundle, choice.precision, threads=threads)


def open_runner(bundle: Bundle, backend: str = "auto", precision: str | None = None,
                threads: int | None = None) -> tuple[Runner, str]:
    """Choose and open at once: the runner for ``backend`` and why."""
    choice = choose_backend(bundle, backend, precision)
    return open_choice(bundle, choice, threads), choice.why


def gated_cpu_backend(bundle: Bundle) -> tuple[str | None, list[str]]:
    """The first reduced-precision CPU backend that passed its gate and can
    run here, and why each one before it was passed over."""
    why_not = []
    for backend in GATED_CPU_BACKENDS:
        ok, measured = passed(bundle, backend)
        # OpenVINO is asked (a second's import) only for a runner that passed: start-up
        reason = openvino_unavailable_reason(backend, bundle) if ok else f"failed its gate: {measured}"
        if reason is None:
            return backend, why_not + [f"{backend} passed its agreement gate: {measured}"]
        why_not.append(f"{backend} not used: {reason}")
    return None, why_not
