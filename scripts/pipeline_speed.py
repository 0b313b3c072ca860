"""The whole pipeline against the model alone, measured in one run
(docs/pipeline.md):

    python -m scripts.pipeline_speed BUNDLE [--hop H] [--frames 480] [--rounds 2] [--photo tests/data/face.jpg]

It renders a long H.264 video (640x360, one moving face, ``--frames``
frames; ``tests/support/synthetic.py``) once, then alternates, ``--rounds`` times:

* ``model``: the same backend (ONNX Runtime fp32 on CPU) on the bundle's
  whole model, a batch of clips of real crops from the video per call:
  frames/s = B x T / seconds per call (median of 3 calls after one warm-up);
* ``stages``: the model part of centred windows alone (``--hop``, default
  T/2): the frame stage on a hop of crops (``StageRunner.run_frames``) and
  one clip stage call (at hop 1 the centre-only one, where the bundle has
  it, as a file run calls), frames/s = hop / seconds;
* ``run``: ``AUDetector.predict_video`` with centred windows at ``--hop`` (what
  ``mdhr-run`` does after start-up): decode, detect, crop, model, rows;
  frames/s = frames / wall seconds.

Each round measures ``model`` and ``stages`` both before and after ``run``
and compares ``run`` with their means, so a change of load during the round
hits both sides.  Printed: a small table of frames/s per round, the
median over rounds of ``run / model`` and ``run / stages``, the machine's
load and CPU flags.
Keep each run under about ten minutes: 480 frames take about a minute per
round on a quiet 2-core host.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_video(path: Path, photo: Path, frames: int) -> None:
    import cv2

    from tests.support.synthetic import FootageMaker, Segment, write_h264

    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    segments = [Segment("clean", 60), Segment("still", 30, speed=0.05), Segment("roll", 30)]
    made = (f.rgb for f in FootageMaker(rgb).frames(itertools.islice(itertools.cycle(segments), frames // 30 + 1)))
    write_h264(path, itertools.islice(made, frames))


def model_fps(runner, clips: np.ndarray) -> float:
    runner.infer(clips)
    seconds = statistics.median(_timed(lambda: runner.infer(clips)) for _ in range(3))
    return clips.shape[0] * clips.shape[1] / seconds


def run_frames(stages, crops: list[np.ndarray], previous):
    """``StageRunner.run_frames``, or one ``frame`` call per crop where the
    runtime measured has no such method (an older commit, for before/after)."""
    if hasattr(stages, "run_frames"):
        return stages.run_frames(crops, previous)
    features = []
    for crop in crops:
        one, previous = stages.frame(crop, previous)
        features.append(one)
    return features, previous


def stages_fps(stages, crops: list[np.ndarray], hop: int) -> float:
    _, taps = run_frames(stages, crops[:1], None)

    # what a file run calls for a window: at hop 1, the centre-only clip stage where the bundle has it
    centre_only = hop == 1 and getattr(stages, "centre_position", None) is not None
    clip = stages.clip_centre if centre_only else stages.clip

    def one_hop():
        features, _ = run_frames(stages, crops[1:1 + hop], taps)
        window = (features * stages.frames)[:stages.frames]
        clip(window)

    one_hop()
    return hop / statistics.median(_timed(one_hop) for _ in range(3))


def run_fps(detector, video: Path, hop: int) -> float:
    start = time.perf_counter()
    table = detector.predict_video(video, windows="centred", hop=hop)
    return len(table) / (time.perf_counter() - start)


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def machine() -> dict:
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpu": model, "flags": [f for f in wanted if f in flags], "cores": os.cpu_count(),
            "load": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--hop", type=int, help="centred windows' hop (default: T/2)")
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--photo", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/face.jpg")
    args = parser.parse_args(argv)

    from mdhr_runtime.backends.runners import OnnxRuntimeRunner
    from mdhr_runtime.detector import AUDetector
    from mdhr_runtime.pipeline import crops as video_crops

    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "long.mp4"
        make_video(video, args.photo, args.frames)
        with AUDetector(args.bundle, "onnxruntime") as detector:
            bundle = detector.bundle
            crops = [c.crop for c in itertools.islice(video_crops(video), 4 * bundle.frames) if c.crop is not None]
            T, B = bundle.frames, bundle.batch
            clips = np.stack([np.stack(crops[i * T:(i + 1) * T]) for i in range(B)])
            whole = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"])
            hop = args.hop or max(T // 2, 1)
            rows = []
            for _ in range(args.rounds):
                model, stages = model_fps(whole, clips), stages_fps(detector.stage_runner, crops, hop)
                run = run_fps(detector, video, hop)
                model = (model + model_fps(whole, clips)) / 2
                stages = (stages + stages_fps(detector.stage_runner, crops, hop)) / 2
                rows.append({"model": model, "stages": stages, "run": run})
            whole.close()
            batch_frames = getattr(detector.stage_runner, "batch_frames", 1)
    result = {"frames": args.frames, "hop": hop, "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rows],
              "run_vs_model": round(statistics.median(r["run"] / r["model"] for r in rows), 3),
              "run_vs_stages": round(statistics.median(r["run"] / r["stages"] for r in rows), 3),
              "batch_frames": batch_frames,
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"{'round':>5} {'model f/s':>10} {'stages f/s':>11} {'run f/s':>8}")
    for i, r in enumerate(rows):
        print(f"{i:>5} {r['model']:>10.2f} {r['stages']:>11.2f} {r['run']:>8.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
