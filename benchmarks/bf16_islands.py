"""What the float32 islands buy under bfloat16, measurable on any CPU.

``python -m mdhr_bench.bf16_islands BUNDLE --video FACES.mp4`` runs the
bundle's model in OpenVINO with bfloat16 *emulated* in float32 arithmetic,
once everywhere and once with the islands of ``openvino-bf16`` kept float32,
and compares both with the fp32 ONNX (ONNX Runtime) on the video's face
clips.  The emulation rounds what a bf16 CPU kernel rounds: the activations
a convolution or matrix product reads, its weights and its output, each to
bfloat16's 8 significant bits (round to nearest); accumulation stays
float32, as in oneDNN's bf16 kernels.  It is an estimate of the numerics
for CPUs without native bf16 (where ``openvino-bf16`` cannot run), not of
the speed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mdhr_export.parity import agreement, concat, reduced_precision_failures
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.backends.openvino_runner import ISLANDS, KEEP_ORIGINAL_PRECISION, mark_fp32_islands
from mdhr_runtime.backends.runners import OnnxRuntimeRunner

ROUNDED_OPS = {"Convolution", "GroupConvolution", "MatMul"}
# Veltkamp's split: (2^16 + 1) * x, minus its difference with x, keeps the
# top 24 - 16 = 8 significant bits of a float32, rounded to nearest.
SPLIT = float(2 ** 16 + 1)


def round_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), as float32."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def _rounded(output):
    import openvino.opset13 as ops

    scaled = ops.multiply(output, ops.constant(np.float32(SPLIT)))
    return ops.subtract(scaled, ops.subtract(scaled, output)).output(0)


def emulate_bf16(model) -> int:
    """Round the inputs, weights and outputs of every convolution and matrix
    product not marked float32; returns how many were rounded."""
    import openvino.opset13 as ops

    count = 0
    for op in list(model.get_ordered_ops()):
        if op.get_type_name() not in ROUNDED_OPS or KEEP_ORIGINAL_PRECISION in op.get_rt_info():
            continue
        for port in op.inputs():
            source = port.get_source_output()
            if source.get_node().get_type_name() == "Constant":
                port.replace_source_output(ops.constant(round_to_bf16(source.get_node().get_data())).output(0))
            else:
                port.replace_source_output(_rounded(source))
        consumers = list(op.output(0).get_target_inputs())
        rounded = _rounded(op.output(0))
        for consumer in consumers:
            consumer.replace_source_output(rounded)
        count += 1
    return count


def run_emulated(bundle, clips: list[np.ndarray], islands: dict | None) -> tuple[dict, int]:
    import openvino as ov

    model = ov.Core().read_model(str(bundle.artifact("onnx")))
    if islands:
        mark_fp32_islands(model, islands)
    rounded = emulate_bf16(model)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    names = list(bundle.card["outputs"])
    outputs = []
    for batch in clips:
        results = request.infer({0: batch})
        outputs.append({n: np.array(results[compiled.output(n)]) for n in names})
    return concat(outputs), rounded


def measure(bundle_dir: Path, video: Path, max_clips: int | None = None) -> dict:
    from mdhr_bench.video import video_clip_batches

    bundle = load_bundle(bundle_dir)
    clips = [batch for batch, _real in video_clip_batches(video, bundle, max_clips)]
    runner = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"])
    reference = concat([runner.infer(c) for c in clips])
    runner.close()
    islands = bundle.card[ISLANDS]
    report = {"bundle": str(bundle_dir), "video": str(video), "clips": len(clips), "method": __doc__.split("\n\n")[1]}
    for label, kept in (("bf16 everywhere", None),
                        ("region modelling fp32", {"region_modelling": islands["region_modelling"]}),
                        ("region modelling and frame differences fp32", islands)):
        outputs, rounded = run_emulated(bundle, clips, kept)
        result = agreement(reference, outputs, bundle.threshold, bundle.au_names)
        report[label] = {"rounded_ops": rounded, "failures": reduced_precision_failures(result),
                         **{k: result[k] for k in ("au_max_abs_error", "au_decision_agreement",
                                                   "median_decision_agreement", "region_argmax_agreement",
                                                   "rank_correlation_min")}}
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
