"""INT8 candidates made from one calibration against their own NNCF runs
(docs/cpu_runners.md, ``export/int8_candidates.py``):

    python -m scripts.cpu_runners_int8_candidates BUNDLE [--groups Backbone.stem,frame_differences,MFD] [--frames 128]

On synthetic face footage (``pipeline_speed``): even face clips calibrate,
odd clips judge, as the export does.  NNCF quantises every group once; for
each group of ``--groups`` the candidate with only that group in INT8 is
made from that model, and again by its own NNCF run with every other group
in the ignored scope.  Printed per group: agreement at the AU medians, the
lowest rank correlation and the largest AU error of both, the largest
difference between their outputs, and the seconds each took; then JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--groups", default="Backbone.stem,frame_differences,MFD")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--photo", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/face.jpg")
    args = parser.parse_args(argv)

    from mdhr_export import int8
    from mdhr_export.int8_candidates import quantize_once, with_float32_nodes
    from mdhr_export.int8_search import Search, SearchSettings
    from mdhr_runtime.backends.runners import OnnxRuntimeRunner
    from mdhr_runtime.bundle import load_bundle
    from scripts.pipeline_speed import machine, make_video

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        staging, video = Path(folder) / "bundle", Path(folder) / "faces.mp4"
        shutil.copytree(args.bundle, staging)
        make_video(video, args.photo, args.frames)
        bundle = load_bundle(staging)
        clips = int8.face_clips(video, bundle)
        calibration, judged = int8.batched(clips[0::2], bundle.batch), int8.batched(clips[1::2], bundle.batch)
        reference = int8.outputs_on(OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"]), judged)
        search = Search(staging, bundle, calibration, judged, reference, SearchSettings(), print)
        try:
            for name in args.groups.split(","):
                float32 = [node for g in search.groups if g.name != name for node in g.nodes]
                start = time.perf_counter()
                derived = judge(search, with_float32_nodes(search.quantized, search.model, set(float32)))
                derived_s = time.perf_counter() - start
                start = time.perf_counter()
                own = judge(search, quantize_once(search.model, [c for c, _ in calibration], float32))
                own_s = time.perf_counter() - start
                rows.append({"group": name, "one_calibration": derived[0], "own_run": own[0],
                             "largest_output_difference": max(float(np.abs(derived[1][k] - own[1][k]).max())
                                                              for k in own[1]),
                             "seconds": {"one_calibration": round(derived_s, 1), "own_run": round(own_s, 1)}})
                print(json.dumps(rows[-1]))
        finally:
            search.close()
    result = {"calibration_seconds": search.calibration_seconds, "groups": rows, "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    return result


def judge(search, model) -> tuple[dict, dict]:
    from mdhr_export import parity
    from mdhr_runtime.backends.openvino_runner import compile_config

    compiled = search.core.compile_model(model, "CPU", compile_config("int8"))
    request = compiled.create_infer_request()
    outputs = parity.concat([{name: np.array(request.infer({0: clips})[compiled.output(name)])[:real]
                              for name in search.reference} for clips, real in search.judged])
    report = parity.judged(search.reference, outputs, search.bundle.threshold, search.bundle.au_names, fp32=False)
    return ({"median_decision_agreement": round(report["median_decision_agreement"], 5),
             "rank_correlation_min": report["rank_correlation_min"],
             "au_max_abs_error": report["au_max_abs_error"]}, outputs)


if __name__ == "__main__":
    main()
