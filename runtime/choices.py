"""Every choice list a user picks from, defined once: the library, the
commands' options and their checks all read them from here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSpec:
    """One way to run a bundle: the runtime's, the benchmarks' and the help's."""

    name: str
    family: str  # torch | onnxruntime | tensorrt | openvino
    precision: str  # fp32 | bf16 | fp16 | int8 (a TensorRT engine's is the one it was built with)
    provider: str | None = None  # ONNX Runtime execution provider
    runtime: bool = False  # mdhr-run and AUDetector offer it (the others are for mdhr-bench and mdhr-parity)

    @property
    def reduced_precision(self) -> bool:
        return self.precision != "fp32"


# Every backend, once.  torch needs the export extra and a checkpoint;
# openvino, openvino-bf16 and int8 the openvino extra; tensorrt the gpu extra.
BACKEND_TABLE = (
    BackendSpec("torch", "torch", "fp32"),
    BackendSpec("torch-bf16", "torch", "bf16"),  # autocast; CPUs with native bfloat16, or CUDA
    BackendSpec("torch-fp16", "torch", "fp16"),  # autocast; CUDA only
    BackendSpec("onnxruntime", "onnxruntime", "fp32", "CPUExecutionProvider", runtime=True),
    BackendSpec("onnxruntime-cuda", "onnxruntime", "fp32", "CUDAExecutionProvider"),
    BackendSpec("onnxruntime-fp16", "onnxruntime", "fp16", "CUDAExecutionProvider"),  # the bundle's FP16 ONNX
    BackendSpec("onnxruntime-tensorrt", "onnxruntime", "fp16", "TensorrtExecutionProvider"),
    BackendSpec("tensorrt", "tensorrt", "fp16", runtime=True),  # the bundle's engine
    BackendSpec("openvino", "openvino", "fp32", runtime=True),  # OpenVINO CPU, the bundle's model.onnx
    BackendSpec("openvino-bf16", "openvino", "bf16", runtime=True),  # bf16 inference, region modelling kept fp32
    BackendSpec("int8", "openvino", "int8", runtime=True),  # the bundle's INT8 model (mdhr-export --int8)
)
# How a bundle runs: auto chooses (backends/selection.py); the others force one.
BACKENDS = ("auto", *(b.name for b in BACKEND_TABLE if b.runtime))
# largest: one face per frame (the largest, then the one tracked); all: every
# face, each with its own face_id.
FACE_MODES = ("largest", "all")
DEFAULT_FACES = "largest"
# official: the paper's non-overlapping windows; centred: each frame scored
# near the middle of its own window (windows/streams.py).
WINDOW_MODES = ("official", "centred")
DEFAULT_WINDOWS = "centred"
# The face detectors faces/registry.py builds.
FACE_DETECTORS = ("mtcnn", "haar")
DEFAULT_FACE_DETECTOR = "mtcnn"
