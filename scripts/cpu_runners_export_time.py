"""The INT8 export's time against the fp32 export's, in one run
(docs/cpu_runners.md):

    python -m scripts.cpu_runners_export_time [--dataset BP4D] [--backbone resnet] [--frames 128] [--skip-fp32]

Renders ``--frames`` frames of synthetic face footage (``pipeline_speed``),
then runs, each as its own ``mdhr-export`` process on untrained weights:

* ``fp32``: ``mdhr-export --random-init ...`` (the bundle, its stages and
  checks);
* ``int8``: the same with ``--int8 --calibrate VIDEO`` (and, on a CPU with
  bf16, the bf16 search: the whole reduced-precision step).

Printed: wall seconds of each, their ratio (the target: at most 2), the
INT8 and bf16 searches' candidate counts, what shipped, and the machine's
load; a small table, then JSON.  About 5 + 10 minutes on a quiet 2-core host.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def export(args: list[str]) -> float:
    start = time.perf_counter()
    command = Path(sys.executable).parent / "mdhr-export"  # the environment's own command
    subprocess.run([str(command), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="BP4D")
    parser.add_argument("--backbone", default="resnet")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--skip-fp32", action="store_true", help="time the INT8 export only")
    parser.add_argument("--photo", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/face.jpg")
    args = parser.parse_args(argv)

    from scripts.pipeline_speed import machine, make_video

    base = ["--random-init", "--dataset", args.dataset, "--backbone", args.backbone]
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "faces.mp4"
        make_video(video, args.photo, args.frames)
        load_before = machine()["load"]
        fp32 = None if args.skip_fp32 else export([*base, "--out", f"{folder}/fp32"])
        int8 = export([*base, "--int8", "--calibrate", str(video), "--out", f"{folder}/int8"])
        card = json.loads((Path(folder) / "int8" / "mdhr.json").read_text())
    searches = {}
    for name in ("int8", "bf16"):
        search = (card.get(name) or {}).get("search")
        if search:
            chosen = search["frontier"][search["chosen"]]
            searches[name] = {"candidates": len(search["frontier"]),
                              "timed": sum(c["speedup_vs_onnxruntime"] is not None for c in search["frontier"]),
                              "kept_fp32": chosen["fp32_groups"], "speedup": chosen["speedup_vs_onnxruntime"],
                              "passed": search["passed"]}
    result = {"fp32_s": None if fp32 is None else round(fp32, 1), "int8_s": round(int8, 1),
              "ratio": None if fp32 is None else round(int8 / fp32, 2), "searches": searches,
              "load_before": load_before, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"{'export':>6} {'seconds':>8}")
    if fp32 is not None:
        print(f"{'fp32':>6} {fp32:>8.1f}")
    print(f"{'int8':>6} {int8:>8.1f}" + ("" if fp32 is None else f"   ratio {int8 / fp32:.2f}x"))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
