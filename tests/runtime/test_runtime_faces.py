"""Face detection and tracking on real footage: frames made from
tests/data/face.jpg, written to an mp4 with OpenCV, decoded back, and run
through the real detectors (ONNX Runtime sessions for MTCNN)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime.faces.detection import HaarDetector, MTCNNDetector, box_iou
from mdhr_runtime.faces.tracking import FaceTracker, eye_roll_degrees
from mdhr_runtime.sources.frames import FrameSource
from tests.support.synthetic import PHOTO_FACE_BOX, FootageMaker, Placement, Segment, write_video


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


@pytest.fixture(scope="module")
def footage(photo, tmp_path_factory):
    """~4 s at 640x360: a near-still head, moving + rolling, blurred, dark,
    face-less stretches; as decoded from a real mp4 file."""
    segments = (Segment("still", 40, speed=0.05), Segment("roll", 25), Segment("empty", 12),
                Segment("blur", 15), Segment("dark", 15), Segment("empty", 8), Segment("clean", 15))
    made = list(FootageMaker(photo, seed=1).frames(segments))
    path = tmp_path_factory.mktemp("footage") / "footage.mp4"
    write_video(path, [f.rgb for f in made])
    frames = list(FrameSource(path))
    assert len(frames) == len(made)
    return frames, [f.truth for f in made], [f.condition for f in made], [f.placement for f in made]


@pytest.fixture(scope="module")
def tracked(footage, detector):
    frames = footage[0]
    tracker = FaceTracker(detector)
    return [tracker.update(f.rgb, f.timestamp) for f in frames]


def test_mtcnn_on_the_photo_finds_face_and_landmarks(photo, detector):
    (face,) = detector.detect(photo)
    assert face.confidence > 0.99
    assert box_iou(face.box, PHOTO_FACE_BOX) > 0.7
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert abs(eye_roll_degrees(face.landmarks)) < 8


def test_mtcnn_finds_nothing_in_faceless_images(photo, detector):
    assert detector.detect(np.full((360, 640, 3), 127, np.uint8)) == []
    landscape = cv2.resize(photo[0:300, 0:170], (640, 360))
    assert detector.detect(landscape) == []


def test_tracker_finds_every_face_and_only_faces(footage, tracked):
    truths = footage[1]
    face_frames = [(r, t) for r, t in zip(tracked, truths) if t is not None]
    found = [r for r, t in face_frames if r.success and box_iou(r.box, t) >= 0.5]
    assert len(found) >= 0.97 * len(face_frames)
    assert np.mean([box_iou(r.box, t) for r, t in face_frames if r.success]) > 0.75
    for result, truth in zip(tracked, truths):
        if truth is None:  # a frame without a face is reported, not dropped
            assert not result.success and result.confidence == 0.0 and result.box is None
    assert len(tracked) == len(truths)


def _step_jitter(boxes, truths) -> tuple[float, float]:
    """RMS frame-to-frame change of the box's error against the truth, as a
    fraction of face height (centre) and of log size."""
    errors = []
    for (x, y, w, h), (tx, ty, tw, th) in zip(boxes, truths):
        errors.append(((x + w / 2 - tx - tw / 2) / th, (y + h / 2 - ty - th / 2) / th, math.log(h / th)))
    steps = np.diff(np.asarray(errors), axis=0)
    return float(np.sqrt(np.mean(steps[:, 0] ** 2 + steps[:, 1] ** 2))), float(np.sqrt(np.mean(steps[:, 2] ** 2)))


def test_smoothing_removes_most_box_jitter_on_a_still_head(footage, tracked):
    truths, conditions = footage[1], footage[2]
    still = [i for i, c in enumerate(conditions) if c == "still"][5:]  # after the filter settles
    raw = _step_jitter([tracked[i].raw_box for i in still], [truths[i] for i in still])
    smooth = _step_jitter([tracked[i].box for i in still], [truths[i] for i in still])
    assert raw[0] > 0 and raw[1] > 0
    assert smooth[0] < 0.5 * raw[0], (raw, smooth)
    assert smooth[1] < 0.5 * raw[1], (raw, smooth)


def test_tracker_reports_eye_roll(footage, tracked, photo, detector):
    conditions, placements = footage[2], footage[3]
    rolling = [i for i, c in enumerate(conditions) if c == "roll" and tracked[i].success]
    assert len(rolling) > 20
    # The head in the photo is tilted a little already; the footage adds up
    # to 10 degrees counter-clockwise on screen, which is minus that in image
    # coordinates (y points down).
    photo_roll = eye_roll_degrees(detector.detect(photo)[0].landmarks)
    errors = [abs(tracked[i].angle - (photo_roll - placements[i].roll)) for i in rolling[8:]]
    assert np.median(errors) < 3.0


def test_scene_cut_is_followed_at_once(photo, detector):
    maker = FootageMaker(photo)
    left = Placement(cx=170, cy=180, face_height=190)
    right = Placement(cx=470, cy=190, face_height=150)
    tracker = FaceTracker(detector)
    for i in range(8):
        tracker.update(maker.render(left, 0.0), i / 30)
    after_cut = tracker.update(maker.render(right, 0.0), 8 / 30)
    assert after_cut.success
    assert box_iou(after_cut.box, maker.truth_box(right)) > 0.6


def test_largest_face_is_chosen(photo, detector):
    maker = FootageMaker(photo)
    big = Placement(cx=420, cy=180, face_height=200)
    frame = maker.render(big, 0.0)
    small = cv2.resize(photo, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    frame[20:20 + small.shape[0], 20:20 + small.shape[1]] = small
    assert len(detector.detect(frame)) == 2
    result = FaceTracker(detector).update(frame, 0.0)
    assert box_iou(result.box, maker.truth_box(big)) > 0.6
    confident = FaceTracker(detector, prefer="confident").update(frame, 0.0)
    assert confident.success


def test_haar_option_tracks_too(footage):
    frames, truths = footage[0], footage[1]
    tracker = FaceTracker(HaarDetector())
    picked = range(0, 60, 3)  # a sample keeps the test quick
    results = [tracker.update(frames[i].rgb, frames[i].timestamp) for i in picked]
    hits = [box_iou(r.box, truths[i]) >= 0.5 for r, i in zip(results, picked) if r.success and truths[i]]
    assert sum(hits) >= 0.9 * sum(truths[i] is not None for i in picked)
    assert all(r.landmarks is None and r.angle == 0.0 for r in results)
    assert HaarDetector().detect(np.full((360, 640, 3), 127, np.uint8)) == []


def test_bad_preference_is_a_clear_error(detector):
    with pytest.raises(MDHRError, match="largest"):
        FaceTracker(detector, prefer="biggest")
