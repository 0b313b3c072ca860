"""TensorRT engine building (TensorRT 10 Python API).  Imported only where
TensorRT is installed; engines are tied to the GPU model and TensorRT
version they are built with, so they are built on the target machine."""
from __future__ import annotations

from pathlib import Path

WORKSPACE_BYTES = 4 << 30


def build_engine(onnx_path: Path, engine_path: Path, fp16: bool, fp32_layers: list[str],
                 timing_cache: Path | None = None, workspace_bytes: int = WORKSPACE_BYTES) -> dict:
    """Build and serialise an engine; returns what it was built with."""
    import tensorrt as trt

    from mdhr.errors import MDHRError
    from mdhr_runtime.tensorrt_runner import gpu_name

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MDHRError(f"{onnx_path}: TensorRT cannot parse the ONNX graph ({errors[:300]})")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    kept = []
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        kept = _keep_layers_fp32(network, set(fp32_layers), trt)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MDHRError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    engine_path.write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "gpu": gpu_name(), "fp16": fp16,
            "fp32_layers": kept, "workspace_bytes": workspace_bytes}


def _keep_layers_fp32(network, onnx_nodes: set[str], trt) -> list[str]:
    """Pin the layers TensorRT made from ``onnx_nodes`` to FP32."""
    def from_onnx_node(layer_name: str) -> bool:
        # the parser names a layer after its ONNX node, with a suffix when one
        # node becomes several layers
        return any(layer_name == n or layer_name.startswith((n + "_", n + " ")) for n in onnx_nodes)

    kept = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if from_onnx_node(layer.name):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            kept.append(layer.name)
    return kept
