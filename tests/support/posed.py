"""Frames of known head pose, made from one frontal photo.

``PosedFace`` lifts the photo onto a smooth generic head (an ellipsoid with
a nose ridge, sized from the photo's own landmarks) and renders it rotated
by known pitch, yaw and roll, seen by a pinhole camera, with a depth
buffer (the far cheek hides behind the nose).  Roll alone is also available
as a plain in-plane rotation of the photo (``rolled``), which is exact.

``pose_errors``, ``landmark_agreement`` and ``flagged_share`` measure the
quality columns with them (tests/runtime/test_quality.py and
scripts/running_quality.py).

What the rendered frames test: the whole chain the runtime runs (MTCNN's
landmarks on a turned face, the fit to ``pose.GENERIC_FACE``, the angle
split) against the rotation that made the frame.  What they do not: the
rendered head is a generic shape of adult proportions, so a real face whose
depth differs from the generic face's (and hair, ears, a real profile) can
read worse than these frames do.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from mdhr_runtime.crops.crop import Cropper, _crop_matrix
from mdhr_runtime.faces.detection import MTCNNDetector
from mdhr_runtime.faces.pose import EYE_DISTANCE_MM, euler_xyz, head_pose, rotation_xyz
from mdhr_runtime.faces.quality import QualityOptions, assess
from mdhr_runtime.faces.tracking import FaceTracker
from tests.support import DATA

# The head, in mm (made independently of pose.GENERIC_FACE): an ellipsoid
# 150 mm wide, 240 tall and 190 deep, centred at the nose tip's height, and
# a nose ridge rising 16 mm above it, narrow across, long up the face.  Its
# pupils come 27 mm and its mouth corners 25 mm behind the nose tip (the
# generic face: 25 and 22).
HEAD_AXES = (75.0, 120.0, 95.0)
HEAD_CENTRE_ABOVE_NOSE = 0.0
NOSE_HEIGHT, NOSE_WIDTH, NOSE_LENGTH = 16.0, 9.0, 16.0
CAMERA_DISTANCE_MM = 700.0


class PosedFace:
    """Renders ``photo`` (RGB) rotated in 3-D; ``landmarks`` are the photo's
    five detector points ([5, 2], detection.LANDMARK_NAMES order)."""

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, supersample: int = 2):
        self.photo = photo
        height, width = photo.shape[:2]
        points = np.asarray(landmarks, dtype=np.float64)
        self.mm_per_px = EYE_DISTANCE_MM / float(np.hypot(*(points[1] - points[0])))
        nose = points[2]
        big = cv2.resize(photo, (width * supersample, height * supersample), interpolation=cv2.INTER_LINEAR)
        ys, xs = np.mgrid[0:big.shape[0], 0:big.shape[1]]
        # pixel centres back in photo pixels, then mm about the nose tip
        u = (xs.ravel() + 0.5) / supersample - 0.5
        v = (ys.ravel() + 0.5) / supersample - 0.5
        x_mm, y_mm = (u - nose[0]) * self.mm_per_px, (v - nose[1]) * self.mm_per_px
        self.points = np.stack([x_mm, y_mm, _depth(x_mm, y_mm)], axis=1)
        self.colours = big.reshape(-1, 3)
        # rotation about the ellipsoid's centre; the camera looks at it from
        # CAMERA_DISTANCE_MM, scaled so the unturned face keeps its size
        self.centre = np.array([0.0, -HEAD_CENTRE_ABOVE_NOSE, HEAD_AXES[2] + NOSE_HEIGHT])
        self.size = (width, height)
        self.nose_px = nose
        self.focal = (CAMERA_DISTANCE_MM - HEAD_AXES[2]) / self.mm_per_px

    def render(self, pitch_deg: float, yaw_deg: float, roll_deg: float, background=(128, 128, 128)) -> np.ndarray:
        """The head turned by Rx(pitch) @ Ry(yaw) @ Rz(roll) about its centre."""
        rotation = rotation_xyz(*(math.radians(a) for a in (pitch_deg, yaw_deg, roll_deg)))
        camera = (self.points - self.centre) @ rotation.T + self.centre
        depth = camera[:, 2] + CAMERA_DISTANCE_MM - self.centre[2]
        u = np.round(self.focal * camera[:, 0] / depth + self.nose_px[0]).astype(np.int64)
        v = np.round(self.focal * camera[:, 1] / depth + self.nose_px[1]).astype(np.int64)
        width, height = self.size
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        pixel = v[inside] * width + u[inside]
        order = np.lexsort((depth[inside], pixel))  # by pixel, nearest first
        first = np.unique(pixel[order], return_index=True)[1]
        chosen = order[first]
        image = np.zeros((height * width, 3), dtype=np.uint8)
        filled = np.zeros(height * width, dtype=np.uint8)
        image[pixel[chosen]] = self.colours[inside][chosen]
        filled[pixel[chosen]] = 255
        image, filled = image.reshape(height, width, 3), filled.reshape(height, width)
        # pinholes where the surface stretched: fill from their neighbours
        holes = cv2.morphologyEx(filled, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > filled
        image = cv2.inpaint(image, holes.astype(np.uint8), 2, cv2.INPAINT_TELEA)
        covered = cv2.morphologyEx(filled, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
        image[~covered] = background
        return image


def _depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance behind the nose tip's plane (mm) of the generic head's front
    surface at (x, y) mm about the nose tip; outside the ellipse a flat back."""
    a, b, c = HEAD_AXES
    dy = y + HEAD_CENTRE_ABOVE_NOSE
    inside = np.clip(1.0 - (x / a) ** 2 - (dy / b) ** 2, 0.0, None)
    surface = c - c * np.sqrt(inside)  # 0 at the ellipsoid's front, c at its rim
    # the nose: a ridge from the brow (y ~ -40) to the tip, longest at the tip
    along = np.where(y > 0, np.exp(-0.5 * (y / 6.0) ** 2), np.exp(-0.5 * (y / (NOSE_LENGTH * 2.5)) ** 2))
    ridge = NOSE_HEIGHT * np.exp(-0.5 * (x / NOSE_WIDTH) ** 2) * along
    return surface - ridge + NOSE_HEIGHT


def rolled(photo: np.ndarray, roll_deg: float, background=(128, 128, 128)) -> np.ndarray:
    """The photo rotated in-plane about its centre by ``roll_deg``: positive
    turns the face clockwise on screen (its eye line falls to the right)."""
    height, width = photo.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -roll_deg, 1.0)
    return cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=background)


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
    """tests/data/face.jpg as RGB."""
    return cv2.cvtColor(cv2.imread(str(DATA / "face.jpg")), cv2.COLOR_BGR2RGB)


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
