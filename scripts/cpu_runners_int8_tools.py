"""Two INT8 tools on one model, measured in one run (docs/cpu_runners.md):

    python -m scripts.cpu_runners_int8_tools BUNDLE [--frames 128] [--rounds 3] [--int8-groups frame_differences ...]

Both quantise the same layer groups (``layer_groups``; default: every group
but the region modelling) statically, weights per output channel,
activations per tensor, calibrated on the even face clips of a synthetic
video (``pipeline_speed.make_video``) and judged on the odd ones with the
export's agreement gate against ONNX Runtime fp32:

* ``nncf``: NNCF on OpenVINO (what ``mdhr-export --int8`` ships), run by
  OpenVINO's CPU plugin;
* ``ort-qdq``: ONNX Runtime's ``quantize_static`` (QDQ format, MinMax
  calibration, per-channel weights, unsigned activations), run by ONNX
  Runtime.

Printed: each tool's quantisation seconds, speed-up against ONNX Runtime
fp32 (median of ``--rounds`` alternating runs on one clip batch) and the
gate's measures; a small table, then JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def excluded_onnx_nodes(bundle, keep_fp32: set[str]) -> list[str]:
    """ONNX node names in the float32 groups (OpenVINO friendly names are
    the ONNX names, with a suffix after '/' for nodes it split)."""
    import onnx
    import openvino as ov

    from mdhr_runtime.backends.layer_groups import islands_of, layer_groups

    groups = layer_groups(ov.Core().read_model(str(bundle.artifact("onnx"))), islands_of(bundle.card))
    kept = {name.split("/")[0] for g in groups if g.name in keep_fp32 for name in g.nodes}
    graph = onnx.load(str(bundle.artifact("onnx")), load_external_data=False).graph
    return [node.name for node in graph.node if node.name in kept]


def ort_qdq(bundle, calibration, excluded: list[str], folder: Path):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = ort.InferenceSession(str(bundle.artifact("onnx")), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Clips(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: b} for b, _ in calibration])

        def get_next(self):
            return next(self.items, None)

    target = folder / "model_qdq.onnx"
    start = time.perf_counter()
    quantize_static(str(bundle.artifact("onnx")), str(target), Clips(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, use_external_data_format=True)
    seconds = time.perf_counter() - start
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    return seconds, lambda b: dict(zip(outputs, session.run(outputs, {name: b})))


def nncf_int8(bundle, calibration, keep_fp32: set[str]):
    import nncf
    import openvino as ov

    from mdhr_runtime.backends.layer_groups import islands_of, layer_groups
    from mdhr_runtime.backends.openvino_runner import compile_config

    core = ov.Core()
    model = core.read_model(str(bundle.artifact("onnx")))
    kept = [n for g in layer_groups(model, islands_of(bundle.card)) if g.name in keep_fp32 for n in g.nodes]
    start = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset([b for b, _ in calibration]),
                              preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calibration),
                              ignored_scope=nncf.IgnoredScope(names=kept, validate=False))
    seconds = time.perf_counter() - start
    compiled = core.compile_model(quantized, "CPU", compile_config("int8"))
    request = compiled.create_infer_request()
    names = list(bundle.card.outputs)
    return seconds, lambda b: {n: np.array(request.infer({0: b})[compiled.output(n)]) for n in names}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--int8-groups", nargs="*", default=None,
                        help="the groups to quantise (default: all but region_modelling)")
    parser.add_argument("--photo", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/face.jpg")
    args = parser.parse_args(argv)

    import openvino as ov

    from mdhr_export import parity
    from mdhr_export.int8 import batched, face_clips
    from mdhr_runtime.backends.layer_groups import islands_of, layer_groups
    from mdhr_runtime.backends.runners import OnnxRuntimeRunner
    from mdhr_runtime.bundle import load_bundle
    from scripts.pipeline_speed import machine, make_video

    bundle = load_bundle(args.bundle)
    groups = [g.name for g in layer_groups(ov.Core().read_model(str(bundle.artifact("onnx"))), islands_of(bundle.card))]
    int8_groups = set(args.int8_groups) if args.int8_groups is not None else set(groups) - {"region_modelling"}
    keep = set(groups) - int8_groups
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "calibrate.mp4"
        make_video(video, args.photo, args.frames)
        clips = face_clips(video, bundle)
        calibration, judged = batched(clips[0::2], bundle.batch), batched(clips[1::2], bundle.batch)
        fp32 = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"])
        reference = parity.concat([{k: v[:r] for k, v in fp32.infer(b).items()} for b, r in judged])
        tools = {"nncf": nncf_int8(bundle, calibration, keep),
                 "ort-qdq": ort_qdq(bundle, calibration, excluded_onnx_nodes(bundle, keep), Path(folder))}
        rows = {}
        for tool, (seconds, infer) in tools.items():
            outputs = parity.concat([{k: v[:r] for k, v in infer(b).items() if k in reference} for b, r in judged])
            report = parity.judged(reference, outputs, bundle.threshold, bundle.au_names, fp32=False)
            base, mine = [], []
            batch = judged[0][0]
            for _ in range(args.rounds):
                for runs, run in ((base, fp32.infer), (mine, infer)):
                    start = time.perf_counter()
                    run(batch)
                    runs.append(time.perf_counter() - start)
            rows[tool] = {"quantise_s": round(seconds, 1),
                          "speedup_vs_onnxruntime": round(float(np.median(base) / np.median(mine)), 3),
                          **{k: report[k] for k in ("median_decision_agreement", "rank_correlation_min",
                                                    "au_max_abs_error", "passed")}}
        fp32.close()
    result = {"int8_groups": sorted(int8_groups), "clips": {"calibration": len(clips[0::2]), "judged": len(clips[1::2])},
              "tools": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"{'tool':>8} {'quantise s':>10} {'speed-up':>9} {'@medians':>9} {'min rank':>9} gate")
    for tool, r in rows.items():
        print(f"{tool:>8} {r['quantise_s']:>10.1f} {r['speedup_vs_onnxruntime']:>8.2f}x "
              f"{100 * r['median_decision_agreement']:>8.2f}% {r['rank_correlation_min'] or 0:>9.3f} "
              f"{'passed' if r['passed'] else 'failed'}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
