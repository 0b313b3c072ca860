"""Resident memory over a long run, and the cost of 4K frames.

    python -m scripts.errors_long_run --model BUNDLE [--frames 3000] [--uhd-frames 20]

Makes (in a temporary folder) an H.264 video of ``--frames`` frames of a
moving face at 320x240, scores it with ``AUDetector.predict_video`` and
samples this process's resident memory (RSS) at the start, the middle and
the end of the run; then does the same for ``--uhd-frames`` frames at
3840x2160 and reports seconds per frame and the peak RSS.  Prints one JSON
document; docs/errors.md reports its figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import psutil

from tests.support.synthetic import FootageMaker, Segment, write_h264

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "face.jpg"


def footage(frames: int, size: tuple[int, int]):
    photo = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    return (f.rgb for f in FootageMaker(photo, size=size).frames([Segment("clean", frames, speed=0.5)]))


def measured_run(detector, video: Path, frames: int) -> dict:
    process = psutil.Process()
    marks = {"start": max(1, frames // 100), "middle": frames // 2, "end": frames}
    rss: dict[str, float] = {}

    def sample(done: int) -> None:
        for name, at in marks.items():
            if done >= at and name not in rss:
                rss[name] = round(process.memory_info().rss / 2**20, 1)

    began = time.perf_counter()
    table = detector.predict_video(video, progress=sample)
    seconds = time.perf_counter() - began
    return {"frames": len(table), "frames_with_face": sum(row.face.success for row in table.rows),
            "complete": table.complete, "seconds_per_frame": round(seconds / len(table), 4),
            "rss_mib": rss, "rss_growth_middle_to_end_mib": round(rss["end"] - rss["middle"], 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--uhd-frames", type=int, default=20)
    args = parser.parse_args()
    from mdhr_runtime.detector import AUDetector

    report = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as folder, AUDetector(args.model, backend="onnxruntime") as detector:
        long_video = Path(folder) / "long.mp4"
        write_h264(long_video, footage(args.frames, (320, 240)))
        report["long_run_320x240"] = measured_run(detector, long_video, args.frames)
        uhd = Path(folder) / "uhd.mp4"
        write_h264(uhd, footage(args.uhd_frames, (3840, 2160)))
        report["uhd_3840x2160"] = measured_run(detector, uhd, args.uhd_frames)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
