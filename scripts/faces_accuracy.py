"""Measure the face detectors on footage with a known face placement.

    python -m scripts.faces_accuracy [--photo tests/data/face.jpg] [--stages]

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

from mdhr_runtime.faces.detection import HaarDetector, MTCNNDetector, box_iou
from mdhr_runtime.faces.tracking import FaceTracker
from tests.support.synthetic import FootageMaker, write_video

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

    def add(self, index: int, truth, boxes: list, condition: str = "") -> None:
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
                math.log(best[3] / th),
                condition == "still"))

    def jitter(self, still_only: bool = False) -> tuple[float, float]:
        """RMS change between consecutive frames of the box's error against
        the truth: centre (percent of face height) and height (percent).  The
        true motion cancels out, so this is what MDHR would see as spurious
        facial motion.  ``still_only``: only the near-still head stretch,
        where all of it is detector noise (elsewhere smoothing lag adds some)."""
        errors = np.asarray(self.centre_errors)
        if len(errors) < 2:
            return float("nan"), float("nan")
        consecutive = np.diff(errors[:, 0]) == 1
        if still_only:
            consecutive &= errors[1:, 4] > 0
        step = np.diff(errors[:, 1:4], axis=0)[consecutive]
        centre = np.sqrt(np.mean(step[:, 0] ** 2 + step[:, 1] ** 2)) * 100
        height = np.sqrt(np.mean(step[:, 2] ** 2)) * 100
        return float(centre), float(height)

    def row(self, name: str) -> str:
        centre, height = self.jitter()
        still_centre, still_height = self.jitter(still_only=True)
        return (f"{name:38s} {100 * self.hits / max(self.face_frames, 1):6.1f}% "
                f"{self.empty_with_detection:3d}/{self.empty_frames:<3d} {self.false_boxes:4d} "
                f"{np.mean(self.ious) if self.ious else 0:6.3f} {centre:5.2f}/{height:4.2f} "
                f"{still_centre:5.2f}/{still_height:4.2f} "
                f"{1000 * self.seconds / max(self.frames, 1):7.2f}")


HEADER = (f"{'setting':38s} {'found':>7s} {'empty+':>7s} {'FP':>4s} {'IoU':>6s} "
          f"{'jitter C/H%':>10s} {'still C/H%':>10s} {'ms/frm':>7s}")


# A second real face: the portrait matplotlib ships as sample data (older
# face, glasses, cap), with its face box labelled by hand like face.jpg's.
GRACE_HOPPER_FACE_BOX = (165.0, 125.0, 205.0, 210.0)


def second_photo() -> np.ndarray | None:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decoded_footage(maker: FootageMaker, workdir: Path):
    """Frames and truths after an mp4v round trip."""
    made = list(maker.frames())
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


def score_detector(detector, frames, truths, conditions) -> Score:
    score = Score()
    detector.detect(frames[0])  # warm-up (session initialisation)
    for index, (rgb, truth) in enumerate(zip(frames, truths)):
        start = time.perf_counter()
        found = detector.detect(rgb)
        score.seconds += time.perf_counter() - start
        score.add(index, truth, [d.box for d in found], conditions[index])
    return score


def score_tracker(tracker: FaceTracker, frames, truths, conditions, raw: bool = False) -> Score:
    score = Score()
    tracker.detector.detect(frames[0])
    tracker.reset()
    for index, (rgb, truth) in enumerate(zip(frames, truths)):
        start = time.perf_counter()
        result = tracker.update(rgb, index / 30.0)
        score.seconds += time.perf_counter() - start
        box = result.raw_box if raw else result.box
        score.add(index, truth, [box] if result.success else [], conditions[index])
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


def stage_timings(photo: np.ndarray, repeats: int = 2) -> None:
    """ms per frame of each front-half stage at 640x360, as the runtime runs
    them (decode from mp4v, track, crop + normalise, pack into clips)."""
    from mdhr_runtime.crops.crop import CroppedFrame, Cropper, to_model_input
    from mdhr_runtime.sources.frames import FrameSource
    from mdhr_runtime.windows.clips import ClipWindows

    with tempfile.TemporaryDirectory() as tmp:
        made = list(FootageMaker(photo).frames())
        path = Path(tmp) / "footage.mp4"
        write_video(path, [f.rgb for f in made])
        best: dict[str, float] = {}
        for _ in range(repeats):
            totals = dict.fromkeys(("decode", "track", "crop+normalise", "clips"), 0.0)
            tracker, cropper = FaceTracker(), Cropper()
            tracker.detector.detect(made[0].rgb)  # warm-up
            cropped = []
            start = time.perf_counter()
            for frame in FrameSource(path):
                now = time.perf_counter()
                totals["decode"] += now - start
                face = tracker.update(frame.rgb, frame.timestamp)
                after_track = time.perf_counter()
                totals["track"] += after_track - now
                crop = to_model_input(cropper.crop(frame.rgb, face)) if face.success else None
                start = time.perf_counter()
                totals["crop+normalise"] += start - after_track
                cropped.append(CroppedFrame(frame.index, frame.timestamp, face, crop))
            start = time.perf_counter()
            for _ in ClipWindows(16, 1).batches(cropped):
                pass
            totals["clips"] = time.perf_counter() - start
            for stage, seconds in totals.items():
                best[stage] = min(best.get(stage, math.inf), 1000 * seconds / len(made))
    print(f"per-stage ms/frame at 640x360 over {len(made)} frames (best of {repeats}):")
    for stage, ms in best.items():
        print(f"  {stage:16s} {ms:6.2f}")
    print(f"  {'total':16s} {sum(best.values()):6.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="tests/data/face.jpg")
    parser.add_argument("--stages", action="store_true", help="only time the runtime's stages")
    args = parser.parse_args(argv)
    photo = cv2.cvtColor(cv2.imread(args.photo), cv2.COLOR_BGR2RGB)
    if args.stages:
        stage_timings(photo)
        return
    makers = {"face.jpg": FootageMaker(photo)}
    hopper = second_photo()
    if hopper is not None:
        makers["grace_hopper.jpg"] = FootageMaker(hopper, face_box=GRACE_HOPPER_FACE_BOX, background_photo=photo)
    for name, maker in makers.items():
        print(f"== footage from {name}")
        measure(maker)


def measure(maker: FootageMaker) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        frames, truths, conditions = decoded_footage(maker, Path(tmp))
    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"{sum(t is not None for t in truths)} with a face")
    print("detectors, full search on every frame (all faces):")
    print(HEADER)
    settings = {
        "haar default 640": lambda: HaarDetector(min_face=40, max_side=640),
        "haar default 320": lambda: HaarDetector(min_face=20, max_side=320),
        "haar alt2 640": lambda: HaarDetector(min_face=40, max_side=640,
                                              cascade="haarcascade_frontalface_alt2.xml"),
        "mtcnn min40 640": lambda: MTCNNDetector(min_face=40, max_side=640),
        "mtcnn min20 320 (default)": lambda: MTCNNDetector(min_face=20, max_side=320),
    }
    for name, make in settings.items():
        print(score_detector(make(), frames, truths, conditions).row(name), flush=True)
    print("trackers (one face per frame; raw = the detector's box before smoothing):")
    print(HEADER)
    trackers = {
        "mtcnn refine+search/30 smoothed": lambda: FaceTracker(MTCNNDetector()),
        "mtcnn refine+search/30 raw": lambda: FaceTracker(MTCNNDetector()),
        "mtcnn search every frame smoothed": lambda: FaceTracker(MTCNNDetector(), redetect_every=1),
        "haar 320 refine+search/30 smoothed": lambda: FaceTracker(HaarDetector(min_face=20, max_side=320)),
        "haar 320 refine+search/30 raw": lambda: FaceTracker(HaarDetector(min_face=20, max_side=320)),
    }
    for name, make in trackers.items():
        print(score_tracker(make(), frames, truths, conditions, raw=name.endswith("raw")).row(name), flush=True)
    print("per condition (found/frames; on empty: frames with a face reported):")
    for name in ("mtcnn refine+search/30 smoothed", "haar 320 refine+search/30 smoothed"):
        print(f"  {name}: {by_condition(trackers[name](), frames, truths, conditions)}")


if __name__ == "__main__":
    main()
