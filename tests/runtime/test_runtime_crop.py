"""Crops in the model's input format: normalisation, the aligned-input
resize, levelled face crops from real detections, and the crop stream."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mdhr.aus import IMAGE_MEAN, IMAGE_STD
from mdhr_runtime.crops.crop import MEAN_RGB, Cropper, crop_stream, resize_aligned, to_model_input
from mdhr_runtime.faces.detection import MTCNNDetector
from mdhr_runtime.faces.tracking import FaceResult, FaceTracker, eye_roll_degrees
from mdhr_runtime.sources.frames import FrameSource
from tests.support.synthetic import FootageMaker, Placement, Segment, write_video


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


def test_to_model_input_is_totensor_then_normalize():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 5, 224, 224, 3), dtype=np.uint8)
    out = to_model_input(crops)
    assert out.shape == (2, 5, 3, 224, 224) and out.dtype == np.float32 and out.flags.c_contiguous
    mean = np.asarray(IMAGE_MEAN)[:, None, None]
    std = np.asarray(IMAGE_STD)[:, None, None]
    expected = (crops[1, 3].transpose(2, 0, 1) / 255.0 - mean) / std
    assert np.allclose(out[1, 3], expected, atol=1e-5)
    # The ImageNet mean colour is the neutral (zero) input.
    neutral = to_model_input(np.full((1, 1, 3), MEAN_RGB, np.uint8))
    assert np.abs(neutral).max() < 0.01


def test_resize_aligned_matches_resize_224(photo):
    square = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    out = resize_aligned(square)
    assert out.shape == (224, 224, 3)
    assert np.array_equal(out, cv2.resize(square, (224, 224), interpolation=cv2.INTER_AREA))
    wide = resize_aligned(cv2.resize(photo, (300, 200)))  # shorter side to 224, centre crop
    assert wide.shape == (224, 224, 3)
    small = resize_aligned(cv2.resize(photo, (100, 100)))  # enlarged
    assert small.shape == (224, 224, 3)


def test_crop_levels_a_rolled_face(photo, detector):
    maker = FootageMaker(photo)
    upright_roll = eye_roll_degrees(detector.detect(photo)[0].landmarks)
    frame = maker.render(Placement(cx=320, cy=180, face_height=220, roll=18.0), 0.0)
    face = FaceTracker(detector).update(frame, 0.0)
    assert face.success and abs(face.angle - (upright_roll - 18.0)) < 3
    crop = Cropper().crop(frame, face)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    (in_crop,) = detector.detect(crop)
    assert abs(eye_roll_degrees(in_crop.landmarks)) < 3  # eyes level
    # The face is centred and fills most of the crop (scale 1.25 of its box).
    x, y, w, h = in_crop.box
    assert abs(x + w / 2 - 112) < 15 and abs(y + h / 2 - 112) < 20
    assert 140 < h < 210
    unaligned = detector.detect(Cropper(align=False).crop(frame, face))[0]
    assert abs(eye_roll_degrees(unaligned.landmarks) - (upright_roll - 18.0)) < 4


def test_crop_outside_the_frame_is_neutral(photo):
    frame = np.full((200, 300, 3), 200, np.uint8)
    # Box centred on the frame's left edge: the crop's left half is off-frame.
    face = FaceResult(success=True, confidence=1.0, box=(-50.0, 50.0, 100.0, 100.0))
    crop = Cropper().crop(frame, face)
    normalised = to_model_input(crop)
    assert np.abs(normalised[:, :, :100]).max() < 0.02
    assert crop[112, 180].tolist() == [200, 200, 200]
    with pytest.raises(ValueError):
        Cropper().crop(frame, FaceResult.missing())


def test_crop_stream_with_tracker_marks_faceless_frames(photo, tmp_path, detector):
    made = list(FootageMaker(photo).frames((Segment("clean", 10), Segment("empty", 5), Segment("clean", 5))))
    path = tmp_path / "v.avi"
    write_video(path, [f.rgb for f in made], codec="MJPG")
    out = list(crop_stream(FrameSource(path), FaceTracker(detector)))
    assert [c.index for c in out] == list(range(20))
    for cropped, truth in zip(out, made):
        if truth.truth is None:
            assert cropped.crop is None and not cropped.face.success
        else:
            assert cropped.crop.shape == (3, 224, 224) and cropped.crop.dtype == np.float32


def test_crop_stream_aligned_path_skips_detection(photo, tmp_path):
    folder = tmp_path / "aligned"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(photo[100:450, 140:440], (256, 256))[..., ::-1])
    cv2.imwrite(str(folder / "3.png"), np.zeros((256, 256, 3), np.uint8))  # no face: still "aligned"
    out = list(crop_stream(FrameSource(folder), tracker=None))
    assert len(out) == 4
    assert all(c.face.success and c.face.confidence == 1.0 and c.face.box == (0, 0, 256, 256) for c in out)
    expected = to_model_input(resize_aligned(cv2.resize(photo[100:450, 140:440], (256, 256))))
    assert np.allclose(out[0].crop, expected, atol=0.05)  # PNG round trip of the same pixels
