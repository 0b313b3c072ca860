"""Runners: one way to run a bundle's model per backend, in the spirit of
Polygraphy's runners.  Each is created from a bundle and offers
``infer(clips) -> {output name: array}``, a ``name`` and ``precision`` for
reports, and ``close()``.

Thread safety: ONNX Runtime sessions may be run from several threads at
once; the TensorRT runner owns one execution context and device buffers, and
an OpenVINO runner one infer request, so give each thread its own.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from mdhr.aus import IMAGE_MEAN, IMAGE_STD
from mdhr.errors import MDHRError
from mdhr_runtime.bundle import Bundle

BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino", "openvino-bf16", "int8")


class Runner(Protocol):
    name: str
    precision: str
    output_names: list[str]

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


# Normalised crops, (pixel / 255 - mean) / std with the ImageNet statistics,
# lie within about -2.1..2.6.  Values far beyond (0..255 pixels, a wrong
# scale) give confident nonsense, so they are refused rather than run.
NORMALISED_RANGE = (min(-m / s for m, s in zip(IMAGE_MEAN, IMAGE_STD)),
                    max((1 - m) / s for m, s in zip(IMAGE_MEAN, IMAGE_STD)))
CLIP_VALUE_LIMIT = 10.0
_EXPECTED = (f"normalised RGB face crops: pixel / 255, then (x - mean) / std with mean {list(IMAGE_MEAN)} "
             f"and std {list(IMAGE_STD)}, values within about {NORMALISED_RANGE[0]:.1f}..{NORMALISED_RANGE[1]:.1f}")


def check_clip_values(clips: np.ndarray) -> None:
    """Refuse input the model would turn into confident nonsense: anything
    but floats (uint8 pixels, complex), NaN or infinity (one NaN pixel
    spreads to most frames of its clip through the frame differences), and
    values far outside the normalised range."""
    if not np.issubdtype(clips.dtype, np.floating):
        raise MDHRError(f"clips of type {clips.dtype} given; the model takes float32 {_EXPECTED}")
    finite = np.isfinite(clips)
    if not finite.all():
        raise MDHRError(f"clips hold {clips.size - int(np.count_nonzero(finite))} NaN or infinite values; "
                        f"the model takes finite {_EXPECTED}")
    low, high = float(clips.min()), float(clips.max())
    if low < -CLIP_VALUE_LIMIT or high > CLIP_VALUE_LIMIT:
        raise MDHRError(f"clip values span {low:g}..{high:g}, far outside the normalised range; the model "
                        f"takes {_EXPECTED}")


def check_clips(clips: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(clips, np.ndarray) or clips.shape != tuple(shape):
        got = getattr(clips, "shape", type(clips).__name__)
        raise MDHRError(f"clips of shape {got} given, the bundle takes {list(shape)} float32 "
                        "(normalised RGB); pad the batch or export with matching --batch/--frames")
    check_clip_values(clips)
    return np.ascontiguousarray(clips, dtype=np.float32)


def _ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception types (a malformed or mismatched graph
    raises these, not a Python error)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))


def onnx_session(path: Path, threads: int | None = None, providers: list[str] | None = None,
                 spinning: bool = True):
    """An ONNX Runtime session on any model file of a bundle (CUDA where
    onnxruntime-gpu has a GPU, else CPU).  ``spinning=False`` for sessions
    that take turns with another: by default ORT's idle worker threads
    busy-wait for more work, taking the cores from the other session."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # ORT raises its own exception types for bad files
        raise MDHRError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]}); "
                        "export the bundle again") from None


class OnnxRuntimeRunner:
    """ONNX Runtime on the given execution providers; by default CUDA where
    onnxruntime-gpu and a GPU exist, else CPU."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: list[str] | None = None,
                 threads: int | None = None):
        kind = {"fp32": "onnx", "fp16": "onnx_fp16"}.get(precision)
        path = bundle.artifact(kind) if kind else None
        if path is None or not path.is_file():
            raise MDHRError(f"{bundle.root}: no {precision} ONNX model in this bundle; " + bundle.export_hint(kind))
        self.session = onnx_session(path, threads, providers)
        self.path = path
        self.input_shape = tuple(bundle.input_shape)
        self._check_graph(bundle)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        used = self.session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.name = f"onnxruntime-{used}"
        self.precision = precision

    def _check_graph(self, bundle: Bundle) -> None:
        """The graph's input and outputs are the ones the card describes."""
        inputs, outputs = self.session.get_inputs(), [o.name for o in self.session.get_outputs()]
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
        if shape != self.input_shape or "au_scores" not in outputs:
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise MDHRError(f"{self.path}: the graph (inputs {found}; outputs {', '.join(outputs)}) is not the "
                            f"model its card describes (one input {list(self.input_shape)}, output au_scores); "
                            f"export the bundle again")

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        clips = check_clips(clips, self.input_shape)
        try:
            outputs = self.session.run(self.output_names, {self.input_name: clips})
        except _ort_errors() as e:
            raise MDHRError(f"{self.path}: ONNX Runtime cannot run it ({str(e).splitlines()[0][:200]}); "
                            "export the bundle again") from None
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None


MIN_TENSORRT = (10, 12)  # strongly typed ONNX networks as built by mdhr-build


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
    from mdhr_runtime.gpu import visible_gpu

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


def open_runner(bundle: Bundle, backend: str = "auto", precision: str | None = None,
                threads: int | None = None) -> tuple[Runner, str]:
    """The runner for ``backend`` and why it was chosen.  ``auto`` prefers a
    TensorRT engine (fastest on NVIDIA GPUs), then (without a GPU for ONNX
    Runtime) a reduced-precision CPU runner (INT8, then OpenVINO bf16) whose
    agreement with fp32 passed its gate at export and that can run here, then
    ONNX Runtime."""
    if backend not in BACKENDS:
        raise MDHRError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend in ("openvino", "openvino-bf16", "int8"):
        from mdhr_runtime.gates import forced_warning
        from mdhr_runtime.openvino_runner import OpenVINORunner

        runner = OpenVINORunner(bundle, backend, threads=threads)
        warning = forced_warning(bundle, backend)
        return runner, f"OpenVINO ({backend}); forced" + (f"; {warning}" if warning else "")
    engine = bundle.artifact("engine")
    if backend in ("auto", "tensorrt"):
        reason = tensorrt_unavailable_reason()
        if reason is None and (engine is None or not engine.is_file()):
            reason = f"the bundle has no TensorRT engine (build one with: mdhr-build {bundle.root} --fp16)"
        if reason is None:
            from mdhr_runtime.tensorrt_runner import TensorRTRunner

            runner = TensorRTRunner(bundle)
            return runner, f"TensorRT {runner.precision} engine found and a CUDA GPU is visible"
        if backend == "tensorrt":
            raise MDHRError(f"backend tensorrt is unavailable: {reason}")
        why_not = [f"TensorRT unavailable: {reason}"]
        chosen = None
        if not onnxruntime_has_gpu():  # a GPU outruns any CPU runner
            chosen, cpu_why = gated_cpu_backend(bundle)
            why_not += cpu_why
        if chosen is not None:
            from mdhr_runtime.openvino_runner import OpenVINORunner

            return OpenVINORunner(bundle, chosen, threads=threads), f"OpenVINO ({chosen}); " + "; ".join(why_not)
    runner = OnnxRuntimeRunner(bundle, precision or default_onnx_precision(bundle), threads=threads)
    why = "forced" if backend == "onnxruntime" else "; ".join(why_not)
    return runner, f"ONNX Runtime ({runner.name}); {why}"


def gated_cpu_backend(bundle: Bundle) -> tuple[str | None, list[str]]:
    """The first reduced-precision CPU backend that passed its gate and can
    run here, and why each one before it was passed over."""
    from mdhr_runtime.gates import GATED_CPU_BACKENDS, passed
    from mdhr_runtime.openvino_runner import openvino_unavailable_reason

    why_not = []
    for backend in GATED_CPU_BACKENDS:
        ok, measured = passed(bundle, backend)
        reason = openvino_unavailable_reason(backend, bundle) or (None if ok else f"failed its gate: {measured}")
        if reason is None:
            return backend, why_not + [f"{backend} passed its agreement gate: {measured}"]
        why_not.append(f"{backend} not used: {reason}")
    return None, why_not
