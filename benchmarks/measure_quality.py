"""How exact the per-row quality columns are, and what they cost.

``python -m mdhr_bench.measure_quality [--model BUNDLE]`` prints:

* head pose against frames of known pose (``posed.py``): roll by in-plane
  rotation of tests/data/face.jpg (exact), pitch and yaw by rendering it on
  a generic 3-D head; the error in degrees of the estimate's turn relative
  to the unturned frame's estimate, per axis and as one angle;
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
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mdhr_bench.posed import PosedFace, rolled
from mdhr_runtime.crops.crop import Cropper, _crop_matrix
from mdhr_runtime.faces.detection import MTCNNDetector
from mdhr_runtime.faces.pose import euler_xyz, head_pose, rotation_xyz
from mdhr_runtime.faces.quality import QualityOptions, assess
from mdhr_runtime.faces.tracking import FaceTracker

PHOTO = Path(__file__).parent.parent / "tests" / "data" / "face.jpg"
SAMPLE = Path(__file__).parent.parent / "demo" / "data" / "sample.mp4"
# (pitch, yaw, roll) degrees: each axis alone, then mixed
RENDERED_POSES = ((0, 15, 0), (0, -15, 0), (0, 30, 0), (0, -30, 0), (15, 0, 0), (-15, 0, 0), (25, 0, 0),
                  (-25, 0, 0), (10, 20, 10), (-10, -20, 5))
ROLLS = (-30, -15, 15, 30)


@dataclass(frozen=True)
class PoseError:
    truth: tuple[float, float, float]  # pitch, yaw, roll degrees
    estimate: tuple[float, float, float] | None  # relative to the unturned frame's; None: no face found
    angle_error: float  # degrees between the two rotations (nan: no face)

    @property
    def axis_errors(self) -> tuple[float, float, float]:
        if self.estimate is None:
            return (math.nan,) * 3
        return tuple(e - t for e, t in zip(self.estimate, self.truth))


def photo_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def _pose_matrix(detector: MTCNNDetector, rgb: np.ndarray) -> np.ndarray | None:
    found = detector.detect(rgb)
    if not found:
        return None
    pose = head_pose(found[0].landmarks)
    return None if any(math.isnan(v) for v in pose) else rotation_xyz(*pose)


def _compare(truth: tuple[float, float, float], matrix: np.ndarray | None, base: np.ndarray) -> PoseError:
    if matrix is None:
        return PoseError(truth, None, math.nan)
    relative = matrix @ base.T  # the turn applied to the head, in camera axes
    known = rotation_xyz(*(math.radians(a) for a in truth))
    cosine = (np.trace(relative @ known.T) - 1) / 2
    return PoseError(truth, tuple(math.degrees(a) for a in euler_xyz(relative)),
                     math.degrees(math.acos(max(-1.0, min(1.0, cosine)))))


def pose_errors(photo: np.ndarray, poses=RENDERED_POSES, rolls=ROLLS,
                detector: MTCNNDetector | None = None) -> tuple[list[PoseError], list[PoseError]]:
    """(rendered 3-D turns, in-plane rolls) against the estimates."""
    detector = detector or MTCNNDetector()
    landmarks = detector.detect(photo)[0].landmarks
    head = PosedFace(photo, landmarks)
    base = _pose_matrix(detector, head.render(0, 0, 0))
    rendered = [_compare(truth, _pose_matrix(detector, head.render(*truth)), base) for truth in poses]
    flat = _pose_matrix(detector, photo)
    rolled_errors = [_compare((0.0, 0.0, float(r)), _pose_matrix(detector, rolled(photo, r)), flat) for r in rolls]
    return rendered, rolled_errors


def landmark_agreement(frames, detector: MTCNNDetector | None = None) -> np.ndarray:
    """Per tracked frame: the largest distance (in eye distances) between a
    row's landmarks and MTCNN's points on that frame's aligned crop, mapped
    back into the frame."""
    detector = detector or MTCNNDetector()
    tracker, cropper = FaceTracker(detector), Cropper()
    distances = []
    for k, rgb in enumerate(frames):
        face = tracker.update(rgb, k / 30)
        if not face.success or face.landmarks is None:
            continue
        x, y, w, h = face.box
        side = max(w, h) * cropper.scale
        matrix = _crop_matrix((x + w / 2, y + h / 2), side, face.angle, cropper.size)
        crop = cv2.warpAffine(rgb, matrix, (cropper.size, cropper.size), flags=cv2.INTER_LINEAR)
        found = detector.detect(crop)
        if not found:
            continue
        back = cv2.invertAffineTransform(matrix)
        points = found[0].landmarks.astype(np.float64) @ back[:, :2].T + back[:, 2]
        eyes = float(np.hypot(*(face.landmarks[1] - face.landmarks[0])))
        distances.append(float(np.hypot(*(points - face.landmarks).T).max()) / eyes)
    return np.asarray(distances)


def flagged_share(frames, options: QualityOptions = QualityOptions()) -> tuple[int, int, Counter]:
    """(rows with a face, rows flagged, reasons) of the tracker alone on
    ``frames``: the flags need no model."""
    tracker = FaceTracker(MTCNNDetector())
    rows, flagged, reasons = 0, 0, Counter()
    for k, rgb in enumerate(frames):
        quality = assess(tracker.update(rgb, k / 30), options)
        if quality is None:
            continue
        rows += 1
        flagged += quality.flagged
        reasons.update(reason.split(">")[0].split("<")[0] for reason in quality.flags)
    return rows, flagged, reasons


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
    from mdhr_bench.synthetic import FootageMaker

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
        from mdhr_runtime.detector import AUDetector

        with AUDetector(args.model, backend="onnxruntime") as detector:
            report, _ = detector.profile(args.video)
        quality = report["stages"]["quality"]
        print(f"cost: quality {quality['ms_per_frame']:.3f} ms/frame, {quality['share']:.3%} of the run's "
              f"{report['seconds']:.1f} s ({report['frames']} frames, {report['fps']} frames/s)")


if __name__ == "__main__":
    main()
