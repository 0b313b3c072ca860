"""How many frames a face tracker started cold needs before its smoothed box
matches a tracker that has run from frame 0: the warm-up a video segment
needs (``mdhr_runtime.batch.segments.TRACKER_WARMUP_FRAMES``).

    python -m scripts.corpora_segment_warmup tests/data/face.jpg

Renders synthetic footage (still, slow and fast face, a faceless stretch),
tracks it once from frame 0 and once from each of several search-grid
frames, and prints, for each start, the frames until the box and roll stay
within 1e-3, 1e-5 and 1e-8 pixels (degrees) of the full run's.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from mdhr_runtime.faces.detection import MTCNNDetector
from mdhr_runtime.faces.tracking import FaceTracker
from mdhr_runtime.sources.frames import FrameSource
from tests.support.synthetic import FootageMaker, Segment, write_video

FOOTAGE = (Segment("still", 120, speed=0.05), Segment("clean", 120), Segment("fast", 90, speed=4.0),
           Segment("empty", 20), Segment("clean", 110))
STARTS = (30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 360, 390)


def tracked(frames, start: int) -> dict[int, np.ndarray | None]:
    tracker = FaceTracker(MTCNNDetector())
    out = {}
    for frame in frames[start:]:
        face = tracker.update(frame.rgb, frame.timestamp)
        out[frame.index] = np.array(face.box + (face.angle,)) if face.success else None
    return out


def frames_to_converge(full: dict, cold: dict, tolerance: float) -> int | None:
    keys = sorted(cold)
    gaps = []
    for k in keys:
        a, b = full[k], cold[k]
        gaps.append(np.inf if (a is None) != (b is None) else 0.0 if a is None else float(np.abs(a - b).max()))
    gaps = np.asarray(gaps)
    return next((i for i in range(len(gaps)) if (gaps[i:] <= tolerance).all()), None)


def main(photo_path: str) -> None:
    photo = cv2.cvtColor(cv2.imread(photo_path), cv2.COLOR_BGR2RGB)
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "footage.mp4"
        write_video(video, [f.rgb for f in FootageMaker(photo).frames(FOOTAGE)])
        frames = list(FrameSource(video))
    full = tracked(frames, 0)
    print("start  frames to 1e-3  1e-5  1e-8")
    for start in STARTS:
        cold = tracked(frames, start)
        print(f"{start:5d}  " + "  ".join(f"{frames_to_converge(full, cold, t)!s:>5}" for t in (1e-3, 1e-5, 1e-8)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/face.jpg")
