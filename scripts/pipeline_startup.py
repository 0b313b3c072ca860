"""Start-up of ``mdhr-run`` on one image, against ONNX Runtime alone opening
the graphs that run uses, measured in one run (docs/pipeline.md).

    python -m scripts.pipeline_startup BUNDLE IMAGE [--repeats 3] [--before OTHER_PYTHON]

Each measure runs in a fresh process (imports, sessions and page cache as a
user's first command meets them, after one warm-up of the file cache and of
Python's bytecode cache, which pip writes at install: ``fresh.timed``):

* ``mdhr-run``: the whole command, wall time and peak resident memory.
* ``ort``: a process that imports onnxruntime and opens, with the options
  the runtime uses, the graphs the run uses: the frame and clip stages
  (centred windows, the default) and MTCNN's three networks.

The ratio is the medians' ratio.  Print the machine's load beside it: the
figures are only comparable within one run.  ``--before`` names the Python
of another checkout's environment (an older commit): its ``mdhr-run`` is
measured too, interleaved with the others, for a before/after in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from scripts.fresh import MDHR_RUN, REPORT, timed

ORT_ALONE = """
import sys, time
start = time.perf_counter()
import onnxruntime as ort
for path in sys.argv[1:]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(__import__("os").environ.get("THREADS", "2"))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
""" + REPORT


def graphs_used(bundle: Path) -> list[str]:
    from mdhr_runtime.bundle import load_bundle
    from mdhr_runtime.faces.detection import DATA_DIR

    loaded = load_bundle(bundle)
    stages = [str(loaded.artifact(kind)) for kind in ("frame_stage", "clip_stage")]
    return stages + [str(DATA_DIR / f"{net}.onnx") for net in ("pnet", "rnet", "onet")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", help="another environment's Python: its mdhr-run measured alongside")
    args = parser.parse_args(argv)
    graphs = graphs_used(args.bundle)
    os.environ.setdefault("THREADS", str(min(os.cpu_count() or 1, 8)))
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "one.csv")
        run_args = [str(args.image), str(args.bundle), out]
        timed(MDHR_RUN, run_args)  # warm the file cache, write the bytecode cache
        if args.before:
            timed(MDHR_RUN, run_args, args.before)
        runs, alone, before = [], [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            runs.append(timed(MDHR_RUN, run_args))
            alone.append(timed(ORT_ALONE, graphs))
            if args.before:
                before.append(timed(MDHR_RUN, run_args, args.before))
    run_s, ort_s = statistics.median(r[0] for r in runs), statistics.median(a[0] for a in alone)
    extra = {}
    if before:
        before_s = statistics.median(b[0] for b in before)
        extra = {"before_run_s": round(before_s, 3), "before_ratio": round(before_s / ort_s, 3)}
    print(json.dumps({"mdhr_run_s": round(run_s, 3), "ort_alone_s": round(ort_s, 3),
                      "ratio": round(run_s / ort_s, 3), **extra,
                      "mdhr_run_peak_gib": round(max(r[1] for r in runs) / 2**30, 3),
                      "ort_alone_peak_gib": round(max(a[1] for a in alone) / 2**30, 3),
                      "graphs": [Path(g).name for g in graphs], "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
