"""FP16 ONNX with float32 inputs and outputs."""
from __future__ import annotations

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

    return convert_float_to_float16(proto, keep_io_types=True, node_block_list=list(keep_fp32))
