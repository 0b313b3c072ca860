"""Approximate head pose from the detector's five landmarks.

The five points (eyes, nose tip, mouth corners) are matched to the same
points of a generic adult face (``GENERIC_FACE``, millimetres) with
OpenCV's ``solvePnP`` (SQPnP: a global solver, deterministic, ~0.1 ms).
The camera is unknown, so it is taken as a long lens looking straight at
the face: the principal point on the landmarks' centre and a focal length
of ``FOCAL_IN_EYE_DISTANCES`` eye distances (a face about 75 cm away).
The off-axis perspective of a face near the edge of a wide-angle frame is
therefore ignored, and a face whose proportions differ from the generic
one (a longer nose, deeper-set eyes) reads as turned by a few degrees.

Angles follow OpenFace's columns: the rotation from the face to the camera
(x right, y down, z forward) split as R = Rx(pitch) @ Ry(yaw) @ Rz(roll),
in radians.  Signs: ``pose_Rx`` > 0 when the face looks down, ``pose_Ry`` >
0 when it turns towards the image's left (the subject's right), ``pose_Rz``
> 0 when it leans so that its eye line falls to the image's right (the
sign of ``tracking.eye_roll_degrees``).  Measured accuracy: docs/running.md.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# The detector's points (detection.LANDMARK_NAMES order: the eye, then the
# mouth corner, on the image's left first) on a generic adult face, in mm:
# x right, y down, z away from the camera, origin at the nose tip.  From
# common anthropometric averages: 63 mm between the pupils, 50 mm mouth
# width, pupils 38 mm above and mouth corners 24 mm below the nose tip, the
# pupils 25 mm and the mouth corners 22 mm behind it.
GENERIC_FACE = np.array([
    [-31.5, -38.0, 25.0],  # left eye (image left)
    [31.5, -38.0, 25.0],   # right eye
    [0.0, 0.0, 0.0],       # nose tip
    [-25.0, 24.0, 22.0],   # left mouth corner
    [25.0, 24.0, 22.0],    # right mouth corner
], dtype=np.float64)
EYE_DISTANCE_MM = 63.0
FOCAL_IN_EYE_DISTANCES = 12.0

NO_POSE = (math.nan, math.nan, math.nan)


def head_pose(landmarks: np.ndarray | None) -> tuple[float, float, float]:
    """(pose_Rx, pose_Ry, pose_Rz) in radians from [5, 2] landmarks in
    frame pixels; NaN where there are none or they are degenerate."""
    if landmarks is None:
        return NO_POSE
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return NO_POSE
    eye_distance = float(np.hypot(*(points[1] - points[0])))
    if eye_distance < 1.0:
        return NO_POSE
    centre = points.mean(axis=0)
    focal = FOCAL_IN_EYE_DISTANCES * eye_distance
    camera = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
    solved, rotation, _ = cv2.solvePnP(GENERIC_FACE, points.reshape(5, 1, 2), camera, None,
                                       flags=cv2.SOLVEPNP_SQPNP)
    if not solved:
        return NO_POSE
    matrix, _ = cv2.Rodrigues(rotation)
    return euler_xyz(matrix)


def euler_xyz(matrix: np.ndarray) -> tuple[float, float, float]:
    """(a, b, c) with matrix == Rx(a) @ Ry(b) @ Rz(c), radians."""
    yaw = math.asin(max(-1.0, min(1.0, float(matrix[0, 2]))))
    pitch = math.atan2(-float(matrix[1, 2]), float(matrix[2, 2]))
    roll = math.atan2(-float(matrix[0, 1]), float(matrix[0, 0]))
    return pitch, yaw, roll


def rotation_xyz(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Rx(pitch) @ Ry(yaw) @ Rz(roll), radians (the inverse of ``euler_xyz``)."""
    cx, sx, cy, sy, cz, sz = (math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw),
                              math.cos(roll), math.sin(roll))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz
