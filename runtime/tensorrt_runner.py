"""Native TensorRT (10+) runner with cuda-python device buffers.

Only imported where TensorRT and a CUDA GPU exist (see
``runners.tensorrt_unavailable_reason``); nothing here runs on CPU machines.
"""
from __future__ import annotations

import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.runners import check_clips, cuda_runtime

cudart = cuda_runtime()


def cuda_check(result):
    """cuda-python calls return (error, *values); raise on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


def gpu_name() -> str:
    props = cuda_check(cudart.cudaGetDeviceProperties(0))
    return props.name.decode() if isinstance(props.name, bytes) else str(props.name)


class TensorRTRunner:
    precision = "fp16"

    def __init__(self, bundle: Bundle):
        import tensorrt as trt

        path = bundle.artifact("engine")
        built = bundle.card.get("engine_build") or {}
        here = {"tensorrt": trt.__version__, "gpu": gpu_name()}
        for key in ("tensorrt", "gpu"):
            if built.get(key) and built[key] != here[key]:
                raise MDHRError(f"{path}: engine was built for {key} {built[key]}, this machine has "
                                f"{here[key]}; rebuild it here with: mdhr-build {bundle.root} --fp16")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise MDHRError(f"{path}: TensorRT {trt.__version__} cannot load this engine (built for "
                            f"another GPU or TensorRT version?); rebuild with: mdhr-build {bundle.root} --fp16")
        self.context = self.engine.create_execution_context()
        self.stream = cuda_check(cudart.cudaStreamCreate())
        self.name = "tensorrt"
        self.input_shape = tuple(bundle.input_shape)
        self.host, self.device = {}, {}
        self.output_names = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = np.empty(shape, dtype=dtype)
            self.device[name] = cuda_check(cudart.cudaMalloc(self.host[name].nbytes))
            self.context.set_tensor_address(name, self.device[name])
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.output_names.append(name)
            else:
                self.input_name = name

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        clips = check_clips(clips, self.input_shape)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(self.device[self.input_name], clips.ctypes.data, clips.nbytes,
                                          h2d, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for name in self.output_names:
            out = self.host[name]
            cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, self.device[name], out.nbytes, d2h, self.stream))
        cuda_check(cudart.cudaStreamSynchronize(self.stream))
        return {name: self.host[name].astype(np.float32, copy=True) for name in self.output_names}

    def close(self) -> None:
        for ptr in self.device.values():
            cudart.cudaFree(ptr)
        self.device.clear()
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
