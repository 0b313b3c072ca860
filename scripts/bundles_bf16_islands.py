"""What the float32 islands buy under a reduced precision, measurable on any CPU.

``python -m scripts.bundles_bf16_islands BUNDLE --video FACES.mp4`` runs the
bundle's model in OpenVINO with bfloat16 *emulated* in float32 arithmetic,
once everywhere and once with the islands of ``openvino-bf16`` kept float32,
and compares both with the fp32 ONNX (ONNX Runtime) on the video's face
clips.  The emulation rounds what a reduced-precision kernel rounds: the
activations a convolution or matrix product reads, its weights and its
output, each to the format's significant bits (round to nearest); the
accumulation stays float32, as in oneDNN's bf16 kernels and in tensor
cores' fp16 products.  It is an estimate of the numerics for machines
without the hardware (where ``openvino-bf16`` or an FP16 engine cannot
run), not of the speed.  ``scripts.bundles_fp16_islands`` uses the same
emulation for FP16.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mdhr_export.parity import agreement, concat, reduced_precision_failures
from mdhr_runtime.backends.layer_groups import KEEP_ORIGINAL_PRECISION, mark_fp32_islands
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.bundle import load_bundle

ROUNDED_OPS = {"Convolution", "GroupConvolution", "MatMul"}
MEASURES = ("au_max_abs_error", "au_decision_agreement", "median_decision_agreement", "region_argmax_agreement",
            "rank_correlation_min")


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), as float32."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def round_to_fp16(values: np.ndarray) -> np.ndarray:
    """float32 -> nearest IEEE half (ties to even), as float32."""
    return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def _veltkamp(output, bits: int):
    """The top ``bits`` significant bits of a float32, rounded to nearest
    (Veltkamp's split: (2^(24-bits) + 1) * x, minus its difference with x)."""
    import openvino.opset13 as ops

    scaled = ops.multiply(output, ops.constant(np.float32(2 ** (24 - bits) + 1)))
    return ops.subtract(scaled, ops.subtract(scaled, output))


def _rounded(output):
    """bfloat16 rounding in the graph: 8 significant bits, float32's range."""
    return _veltkamp(output, 8).output(0)


# Half's smallest normal number and its subnormals' spacing.
FP16_MIN_NORMAL, FP16_SUBNORMAL_STEP = 2.0 ** -14, 2.0 ** -24


def _rounded_fp16(output):
    """IEEE half rounding in the graph: 11 significant bits, and below the
    smallest normal a fixed step (subnormals).  (OpenVINO removes a pair of
    Converts to f16 and back, so the rounding is spelt out.)  Values beyond
    half's largest (65504) stay finite here, where a GPU would overflow."""
    import openvino.opset13 as ops

    step = ops.multiply(ops.round(ops.multiply(output, ops.constant(np.float32(1 / FP16_SUBNORMAL_STEP))),
                                  "half_to_even"), ops.constant(np.float32(FP16_SUBNORMAL_STEP)))
    subnormal = ops.less(ops.abs(output), ops.constant(np.float32(FP16_MIN_NORMAL)))
    return ops.select(subnormal, step, _veltkamp(output, 11)).output(0)


@dataclass(frozen=True)
class Format:
    """A reduced-precision format: its rounding in numpy (for weights) and
    in the OpenVINO graph (for activations)."""

    round_array: Callable[[np.ndarray], np.ndarray]
    round_output: Callable


FORMATS = {"bf16": Format(round_to_bf16, _rounded), "fp16": Format(round_to_fp16, _rounded_fp16)}


def emulate(model, precision: str = "bf16") -> int:
    """Round the inputs, weights and outputs of every convolution and matrix
    product not marked float32 to ``precision`` (a key of FORMATS); returns
    how many were rounded."""
    import openvino.opset13 as ops

    fmt = FORMATS[precision]
    count = 0
    for op in list(model.get_ordered_ops()):
        if op.get_type_name() not in ROUNDED_OPS or KEEP_ORIGINAL_PRECISION in op.get_rt_info():
            continue
        for port in op.inputs():
            source = port.get_source_output()
            if source.get_node().get_type_name() == "Constant":
                port.replace_source_output(ops.constant(fmt.round_array(source.get_node().get_data())).output(0))
            else:
                port.replace_source_output(fmt.round_output(source))
        consumers = list(op.output(0).get_target_inputs())
        rounded = fmt.round_output(op.output(0))
        for consumer in consumers:
            consumer.replace_source_output(rounded)
        count += 1
    return count


def run_emulated(bundle, clips: list[np.ndarray], islands: dict | None, precision: str = "bf16"
                 ) -> tuple[dict, int]:
    import openvino as ov

    model = ov.Core().read_model(str(bundle.artifact("onnx")))
    if islands:
        mark_fp32_islands(model, islands)
    rounded = emulate(model, precision)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    names = list(bundle.card.outputs)
    outputs = []
    for batch in clips:
        results = request.infer({0: batch})
        outputs.append({n: np.array(results[compiled.output(n)]) for n in names})
    return concat(outputs), rounded


def face_clips(bundle, video: Path, max_clips: int | None) -> list[np.ndarray]:
    from mdhr_bench.video import video_clip_batches

    return [batch for batch, _real in video_clip_batches(video, bundle, max_clips)]


def fp32_reference(bundle, clips: list[np.ndarray]) -> dict:
    runner = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"])
    try:
        return concat([runner.infer(c) for c in clips])
    finally:
        runner.close()


def summarise(reference: dict, outputs: dict, bundle) -> dict:
    """The measures the islands are judged by, and the gate's failures."""
    result = agreement(reference, outputs, bundle.threshold, bundle.au_names)
    return {"failures": reduced_precision_failures(result), **{k: result[k] for k in MEASURES}}


def measure(bundle_dir: Path, video: Path, max_clips: int | None = None) -> dict:
    bundle = load_bundle(bundle_dir)
    clips = face_clips(bundle, video, max_clips)
    reference = fp32_reference(bundle, clips)
    islands = bundle.card.islands
    report = {"bundle": str(bundle_dir), "video": str(video), "clips": len(clips), "method": __doc__.split("\n\n")[1]}
    for label, kept in (("bf16 everywhere", None),
                        ("region modelling fp32", {"region_modelling": islands["region_modelling"]}),
                        ("region modelling and frame differences fp32", islands)):
        outputs, rounded = run_emulated(bundle, clips, kept)
        report[label] = {"rounded_ops": rounded, **summarise(reference, outputs, bundle)}
        print(label, json.dumps(report[label]), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--max-clips", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = measure(args.bundle, args.video, args.max_clips)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
