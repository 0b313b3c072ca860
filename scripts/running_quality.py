"""How exact the per-row quality columns are, and what they cost: the
measurements behind docs/running.md's "Face quality and flags".

``python -m scripts.running_quality [--model BUNDLE]`` prints:

* head pose against frames of known pose (``tests/support/posed.py``): roll
  by in-plane rotation of tests/data/face.jpg (exact), pitch and yaw by
  rendering it on a generic 3-D head; the error in degrees of the
  estimate's turn relative to the unturned frame's estimate;
* the landmarks against the aligned-crop step: each frame's five points
  against MTCNN's own points on the frame's aligned crop, mapped back to
  the frame, in eye distances;
* the share of flagged rows (and why) on the project's synthetic test
  footage (``synthetic.DEFAULT_SEGMENTS``) and on the demo's sample video;
* with ``--model``: the quality stage's time against the whole scoring
  time of the same run (``AUDetector.profile``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from mdhr_runtime.detector import AUDetector
from tests.support import ROOT
from tests.support.posed import PoseError, flagged_share, landmark_agreement, photo_rgb, pose_errors
from tests.support.synthetic import FootageMaker

SAMPLE = ROOT / "demo" / "data" / "sample.mp4"


def _video_frames(path: Path):
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _print_pose(title: str, errors: list[PoseError]) -> None:
    print(title)
    for e in errors:
        shown = "no face" if e.estimate is None else \
            f"estimate {tuple(round(v, 1) for v in e.estimate)}, error {e.angle_error:.1f} deg"
        print(f"  truth (pitch, yaw, roll) {e.truth}: {shown}")
    angles = [e.angle_error for e in errors if e.estimate is not None]
    print(f"  mean {np.mean(angles):.1f} deg, largest {np.max(angles):.1f} deg over {len(angles)} of {len(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a bundle, for the cost of the quality stage against scoring")
    parser.add_argument("--video", type=Path, default=SAMPLE, help="the video --model scores")
    args = parser.parse_args()
    photo = photo_rgb()
    rendered, rolls = pose_errors(photo)
    _print_pose("head pose, rendered 3-D turns:", rendered)
    _print_pose("head pose, in-plane rolls (exact truth):", rolls)
    footage = [f.rgb for f in FootageMaker(photo).frames()]
    agreement = landmark_agreement(footage[:240])
    print(f"landmarks against the aligned crop's: median {np.median(agreement):.3f}, 95th percentile "
          f"{np.percentile(agreement, 95):.3f} eye distances over {len(agreement)} frames")
    for name, frames in (("synthetic test footage", footage), ("demo sample", list(_video_frames(SAMPLE)))):
        rows, flagged, reasons = flagged_share(frames)
        print(f"{name}: {len(frames)} frames, {rows} with a face, {flagged} flagged ({flagged / max(rows, 1):.1%}): "
              f"{dict(reasons)}")
    if args.model:
        with AUDetector(args.model, backend="onnxruntime") as detector:
            report, _ = detector.profile(args.video)
        quality = report["stages"]["quality"]
        print(f"cost: quality {quality['ms_per_frame']:.3f} ms/frame, {quality['share']:.3%} of the run's "
              f"{report['seconds']:.1f} s ({report['frames']} frames, {report['fps']} frames/s)")


if __name__ == "__main__":
    main()
