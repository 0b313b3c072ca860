"""Measure the face detectors on footage with a known face placement.

    python -m mdhr_runtime.measure_faces [--photo tests/data/face.jpg] [--frames-out DIR]

Footage comes from ``synthetic.FootageMaker`` (640x360 at 30 fps, passed
through an mp4v encode/decode so codec artefacts are included).  For each
detector setting it prints detection rate on face frames, false positives,
box IoU against the known placement, frame-to-frame box jitter and ms per
frame.  These numbers chose the default detector; rerun after changing it.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mdhr_runtime.faces import FaceTracker, HaarDetector, MTCNNDetector, box_iou
from mdhr_runtime.synthetic import FootageMaker, write_video

HIT_IOU = 0.4  # a detection this close to the true box counts as finding the face
MISS_IOU = 0.2  # a detection this far from it is a false positive


@dataclass
class Score:
    face_frames: int = 0
    hits: int = 0
    empty_frames: int = 0
    empty_with_detection: int = 0
    false_boxes: int = 0
    ious: list = field(default_factory=list)
    centre_errors: list = field(default_factory=list)  # (frame, dx, dy, dlogh) relative to truth
    seconds: float = 0.0
    frames: int = 0

    def add(self, index: int, truth, boxes: list) -> None:
        self.frames += 1
        if truth is None:
            self.empty_frames += 1
            self.empty_with_detection += bool(boxes)
            self.false_boxes += len(boxes)
            return
        self.face_frames += 1
        overlaps = [box_iou(b, truth) for b in boxes]
        self.false_boxes += sum(o < MISS_IOU for o in overlaps)
        if overlaps and max(overlaps) >= HIT_IOU:
            self.hits += 1
            best = boxes[int(np.argmax(overlaps))]
            self.ious.append(max(overlaps))
            th = truth[3]
            self.centre_errors.append((
                index,
                (best[0] + best[2] / 2 - truth[0] - truth[2] / 2) / th,
                (best[1] + best[3] / 2 - truth[1] - truth[3] / 2) / th,
                math.log(best[3] / th)))

    def jitter(self) -> tuple[float, float]:
        """RMS change between consecutive frames of the box's error against
        the truth: centre (percent of face height) and height (percent).  The
        true motion cancels out, so this is what MDHR would see as spurious
        facial motion."""
        errors = np.asarray(self.centre_errors)
        if len(errors) < 2:
            return float("nan"), float("nan")
        consecutive = np.diff(errors[:, 0]) == 1
        step = np.diff(errors[:, 1:], axis=0)[consecutive]
        centre = np.sqrt(np.mean(step[:, 0] ** 2 + step[:, 1] ** 2)) * 100
        height = np.sqrt(np.mean(step[:, 2] ** 2)) * 100
        return float(centre), float(height)

    def row(self, name: str) -> str:
        centre, height = self.jitter()
        return (f"{name:34s} {100 * self.hits / max(self.face_frames, 1):6.1f}% "
                f"{self.empty_with_detection:3d}/{self.empty_frames:<3d} {self.false_boxes:4d} "
                f"{np.mean(self.ious) if self.ious else 0:6.3f} {centre:6.2f} {height:6.2f} "
                f"{1000 * self.seconds / max(self.frames, 1):7.2f}")


HEADER = (f"{'setting':34s} {'found':>7s} {'empty+':>7s} {'FP':>4s} {'IoU':>6s} "
          f"{'jitC%':>6s} {'jitH%':>6s} {'ms/frm':>7s}")


def decoded_footage(photo: np.ndarray, workdir: Path):
    """Frames and truths after an mp4v round trip."""
    made = list(FootageMaker(photo).frames())
    path = workdir / "footage.mp4"
    write_video(path, [f.rgb for f in made])
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, [f.truth for f in made], [f.condition for f in made]


def score_detector(detector, frames, truths) -> Score:
    score = Score()
    detector.detect(frames[0])  # warm-up (session initialisation)
    for index, (rgb, truth) in enumerate(zip(frames, truths)):
        start = time.perf_counter()
        found = detector.detect(rgb)
        score.seconds += time.perf_counter() - start
        score.add(index, truth, [d.box for d in found])
    return score


def score_tracker(tracker: FaceTracker, frames, truths, raw: bool = False) -> Score:
    score = Score()
    tracker.detector.detect(frames[0])
    tracker.reset()
    for index, (rgb, truth) in enumerate(zip(frames, truths)):
        start = time.perf_counter()
        result = tracker.update(rgb, index / 30.0)
        score.seconds += time.perf_counter() - start
        box = result.raw_box if raw else result.box
        score.add(index, truth, [box] if result.success else [])
    return score


def by_condition(tracker: FaceTracker, frames, truths, conditions) -> str:
    """Detection rate of a tracker per footage condition."""
    tracker.reset()
    hits: dict[str, list[int]] = {}
    for index, (rgb, truth, cond) in enumerate(zip(frames, truths, conditions)):
        result = tracker.update(rgb, index / 30.0)
        if truth is None:
            hits.setdefault(cond, [0, 0])
            hits[cond][0] += result.success  # false positives on empty frames
            hits[cond][1] += 1
        else:
            ok = result.success and box_iou(result.box, truth) >= HIT_IOU
            hits.setdefault(cond, [0, 0])
            hits[cond][0] += ok
            hits[cond][1] += 1
    return "  ".join(f"{c}:{h}/{n}" for c, (h, n) in hits.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="tests/data/face.jpg")
    args = parser.parse_args(argv)
    photo = cv2.cvtColor(cv2.imread(args.photo), cv2.COLOR_BGR2RGB)
    cv2.setNumThreads(2)
    with tempfile.TemporaryDirectory() as tmp:
        frames, truths, conditions = decoded_footage(photo, Path(tmp))
    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"{sum(t is not None for t in truths)} with a face")
    print("raw detectors, every frame:")
    print(HEADER)
    settings = {
        "haar default 640": lambda: HaarDetector(min_face=40, max_side=640),
        "haar default 320": lambda: HaarDetector(min_face=20, max_side=320),
        "haar alt2 640": lambda: HaarDetector(min_face=40, max_side=640,
                                              cascade="haarcascade_frontalface_alt2.xml"),
        "mtcnn min40 640": lambda: MTCNNDetector(min_face=40, max_side=640),
        "mtcnn min20 320": lambda: MTCNNDetector(min_face=20, max_side=320),
        "mtcnn min20 640": lambda: MTCNNDetector(min_face=20, max_side=640),
    }
    for name, make in settings.items():
        print(score_detector(make(), frames, truths).row(name), flush=True)
    print("trackers (one face per frame):")
    print(HEADER)
    trackers = {
        "mtcnn refine+search/30 smoothed": lambda: FaceTracker(MTCNNDetector(min_face=20, max_side=320)),
        "mtcnn refine+search/30 raw": lambda: FaceTracker(MTCNNDetector(min_face=20, max_side=320)),
        "mtcnn search every frame smoothed": lambda: FaceTracker(MTCNNDetector(min_face=20, max_side=320),
                                                                 redetect_every=1),
        "haar 320 smoothed": lambda: FaceTracker(HaarDetector(min_face=20, max_side=320), min_confidence=0.0),
        "haar 320 raw": lambda: FaceTracker(HaarDetector(min_face=20, max_side=320), min_confidence=0.0),
    }
    for name, make in trackers.items():
        print(score_tracker(make(), frames, truths, raw=name.endswith("raw")).row(name), flush=True)
    print("per condition (found/frames; on empty: frames with a face reported):")
    for name in ("mtcnn refine+search/30 smoothed", "mtcnn search every frame smoothed", "haar 320 smoothed"):
        print(f"  {name}: {by_condition(trackers[name](), frames, truths, conditions)}")


if __name__ == "__main__":
    main()
