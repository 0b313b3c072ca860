"""FP16 ONNX with float32 inputs and outputs."""
from __future__ import annotations

import numpy as np
import onnx

# How FP16 agreement is estimated on a CPU-only machine: the FP16 graph runs
# in ONNX Runtime's CPU provider, which stores every weight and every tensor
# between operators in float16 (so each rounds to FP16 precision) but computes
# most operators in float32 through inserted casts.  This captures FP16
# storage rounding, the main source of error, but not FP16 accumulation
# inside kernels; the GPU measurement, where available, is the real one.
# On CPUs with AVX512-FP16 (recent Xeons) ONNX Runtime computes some operators
# in FP16 itself: there the same graph measured 1.4e-2 AU error, against
# 2.5e-4 on AVX2/AVX-512 hosts, so the estimate depends on the host.
CPU_EMULATION = ("FP16 graph on ONNX Runtime CPU: weights and inter-operator tensors rounded to "
                 "float16, operator arithmetic mostly float32 (no FP16 accumulation)")


def to_fp16(proto: onnx.ModelProto, keep_fp32: list[str]) -> onnx.ModelProto:
    """Weights and activations to float16, except the nodes in ``keep_fp32``;
    graph inputs and outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(proto, keep_io_types=True, node_block_list=list(keep_fp32))
    in_topological_order(converted.graph)
    return converted


def in_topological_order(graph: onnx.GraphProto) -> None:
    """Reorder the nodes so each comes after the nodes it reads, as ONNX
    requires (the converter appends the casts of the graph's inputs at the
    end); otherwise the order is kept."""
    available = {""} | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    waiting, ordered = list(graph.node), []
    while waiting:
        ready = [node for node in waiting if all(name in available for name in node.input)]
        if not ready:
            raise ValueError("the FP16 graph has a cycle or reads a value nothing produces")
        for node in ready:
            available.update(node.output)
        ordered += ready
        taken = {id(node) for node in ready}
        waiting = [node for node in waiting if id(node) not in taken]
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


# Which of the card's reduced-precision islands the FP16 graphs keep in
# float32.  None: measured with ``python -m scripts.bundles_fp16_islands`` on the
# BP4D ResNet-50 bundle (docs/bundles.md, the card's ``fp16_islands``), the
# frame differences in float32 bought less than the rule asks (0.2 points
# of agreement at the AU medians, 0.002 of rank correlation).  Kept, they
# held 62.9M of the 93.2M weights in float32 and about 6 of 14 GFLOP per
# frame out of FP16.  Only the single-node islands (frame_differences) can
# be named here; the converter's block list takes exact nodes.
FP16_FP32_PARTS: tuple[str, ...] = ()


def kept_nodes(islands: dict[str, list[str]]) -> list[str]:
    """The nodes of the card's ``islands`` the FP16 graphs keep in float32."""
    return [node for part in FP16_FP32_PARTS for node in islands[part]]


def weight_types(path) -> dict[str, int]:
    """How many weights (initializer elements) of a graph are float16 and
    float32, read from its structure only."""
    proto = onnx.load(str(path), load_external_data=False)
    counts = {"float16": 0, "float32": 0}
    names = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.FLOAT: "float32"}
    for tensor in proto.graph.initializer:
        if tensor.data_type in names:
            counts[names[tensor.data_type]] += int(np.prod(tensor.dims, dtype=np.int64))
    return counts


def describe(folder, card) -> dict:
    """The card's account of the FP16 graphs of ``card`` (a ``Card``): what
    stays float32 and how many of each graph's weights that is."""
    from pathlib import Path

    graphs = {kind: artifact.name for kind, artifact in card.artifacts.items()
              if kind in ("onnx_fp16", "frame_stage_fp16", "clip_stage_fp16")}
    counts = {kind: weight_types(Path(folder) / name) for kind, name in graphs.items()}
    return {"kept_fp32": list(FP16_FP32_PARTS),
            "weights": {kind: {**c, "float32_fraction": round(c["float32"] / max(1, sum(c.values())), 4)}
                        for kind, c in counts.items()}}
