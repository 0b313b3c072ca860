"""TensorRT engines through Polygraphy's loaders, strongly typed: every
tensor's precision comes from the ONNX's types, so ``model_fp16.onnx``
(float16 with float32 frame differences) builds an FP16 engine with those
float32 islands, and ``model.onnx`` a float32 one.  This is the only way
TensorRT 11 builds reduced precision (it removed the weakly typed builder
flags and per-layer precisions), and it works the same on 10.12+.

Composing the loaders touches no TensorRT object, so it is inspected in the
tests on machines without TensorRT; calling them needs a GPU.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from mdhr.errors import MDHRError

WORKSPACE_BYTES = 4 << 30


class WorkspaceLimit(Mapping):
    """Polygraphy's ``memory_pool_limits`` ({trt.MemoryPoolType.WORKSPACE:
    bytes}) with the TensorRT enum looked up only when the config is built,
    so composing the loaders needs no TensorRT."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def _key(self):
        import tensorrt as trt

        return trt.MemoryPoolType.WORKSPACE

    def __getitem__(self, key):
        if key != self._key():
            raise KeyError(key)
        return self.nbytes

    def __iter__(self):
        return iter([self._key()])

    def __len__(self) -> int:
        return 1


def network_loader(onnx_path: Path):
    """Polygraphy's ONNX network loader, strongly typed, whose parse errors
    name the ONNX node (Polygraphy's own only logs them, then fails)."""
    from polygraphy.backend.trt import NetworkFromOnnxPath
    from polygraphy.backend.trt.loader import BaseNetworkFromOnnx

    class StronglyTypedNetwork(NetworkFromOnnxPath):
        def __call__(self):
            # The base makes the builder, the strongly typed network and the
            # parser (Polygraphy warns unless its impl is called from a
            # ``__call__``, hence the override here rather than of call_impl).
            builder, network, parser = BaseNetworkFromOnnx.call_impl(self)
            if not parser.parse_from_file(self.path):
                raise MDHRError(describe_parse_failure(Path(self.path), parser))
            return builder, network, parser

    return StronglyTypedNetwork(str(onnx_path), strongly_typed=True)


def describe_parse_failure(onnx_path: Path, parser) -> str:
    """One line naming the ONNX node(s) TensorRT's parser refused."""
    problems = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        problems.append(f"node {error.node_name() or '#' + str(error.node())} ({error.node_operator()}): "
                        f"{error.desc()}")
    detail = "; ".join(problems) or "no error reported by the parser"
    return (f"{onnx_path}: TensorRT cannot parse the ONNX graph: {detail[:400]}; "
            "export the bundle again with this mdhr-toolkit, or report it with the TensorRT version")


def engine_loader(onnx_path: Path, timing_cache: Path, workspace_bytes: int = WORKSPACE_BYTES):
    """network (strongly typed, from ``onnx_path``) -> config (workspace limit,
    timing cache) -> serialized engine; the timing cache is read before and
    updated after the build."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork

    config = CreateConfig(memory_pool_limits=WorkspaceLimit(workspace_bytes), load_timing_cache=str(timing_cache))
    return EngineBytesFromNetwork(network_loader(onnx_path), config=config, save_timing_cache=str(timing_cache))


def build_engine(onnx_path: Path, timing_cache: Path, workspace_bytes: int = WORKSPACE_BYTES) -> tuple[bytes, float]:
    """The serialized engine of ``onnx_path`` and its build time in seconds."""
    from polygraphy.exception import PolygraphyException

    start = time.perf_counter()
    try:
        serialized = engine_loader(onnx_path, timing_cache, workspace_bytes)()
    except PolygraphyException as e:
        raise MDHRError(f"{onnx_path}: TensorRT engine build failed ({str(e).splitlines()[0][:300]}); "
                        "see the TensorRT log above") from None
    return bytes(serialized), round(time.perf_counter() - start, 1)
