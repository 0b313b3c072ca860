"""Per-row face quality: what was measured of a face, and whether its AU
values should be trusted.

``assess`` turns a tracked face (``tracking.FaceResult``) into a
``FaceQuality``: its five landmarks (frame pixels), an approximate head
pose from them (``pose.py``), its size, the frames since the detector's
full search last found it, and the reasons it is flagged under
``QualityOptions``' thresholds (reason names: ``choices.QUALITY_FLAGS``):

* ``yaw>35`` / ``pitch>25``: the head is turned or tilted beyond the
  threshold (degrees); MDHR was trained on near-frontal faces.
* ``face<64px``: the face box's longer side is under the threshold; its
  224-pixel crop is upsampled and little AU detail survives.
* ``low-confidence``: the detector's confidence is under the threshold.
* ``track-gap``: the face was not found on one of the last ``gap_frames``
  frames (it was just found again, or its track just began after the run's
  first frame): the windows around it hold frames without this face.
* ``no-pose``: a detector without landmarks (Haar) found it; its pose is
  unknown.  Aligned crops (no detector) are never flagged for it.

Rows without a face have no quality.  Everything here is a function of the
tracker's output alone, so every entry point gives the same values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mdhr.errors import InputError, param
from mdhr_runtime.choices import QUALITY_FLAGS
from mdhr_runtime.faces.pose import NO_POSE, head_pose
from mdhr_runtime.faces.tracking import FaceResult

# Defaults, documented in docs/running.md.  The gap is kept well under the
# tracker's warm-up before a batch segment (batch/segments.py, 120 frames),
# so segments flag exactly the frames a whole run flags.
MAX_YAW_DEG = 35.0
MAX_PITCH_DEG = 25.0
MIN_FACE_PX = 64
MIN_CONFIDENCE = 0.95
GAP_FRAMES = 8
MAX_GAP_FRAMES = 60


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds of the quality flags (``mdhr-run --flag-*``); a value out
    of range raises ``InputError`` naming it."""

    max_yaw_deg: float = MAX_YAW_DEG
    max_pitch_deg: float = MAX_PITCH_DEG
    min_face_px: int = MIN_FACE_PX
    min_confidence: float = MIN_CONFIDENCE
    gap_frames: int = GAP_FRAMES

    def __post_init__(self):
        for name, low, high, unit in (("max_yaw_deg", 0, 90, "degrees"), ("max_pitch_deg", 0, 90, "degrees"),
                                      ("min_face_px", 0, 10000, "pixels"),
                                      ("min_confidence", 0, 1, "a detector confidence"),
                                      ("gap_frames", 0, MAX_GAP_FRAMES, "frames")):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise InputError(f"{param(name)} {value} is outside {low} to {high} ({unit}): give a value in "
                                 "that range")
            if name in ("min_face_px", "gap_frames") and value != int(value):
                raise InputError(f"{param(name)} {value} is not a whole number: give a whole number of {unit}")


@dataclass(frozen=True)
class FaceQuality:
    """What was measured of one face in one frame (see the module doc)."""

    landmarks: np.ndarray | None  # [5, 2] frame pixels, detection.LANDMARK_NAMES order; None: none found
    pose: tuple[float, float, float]  # pose_Rx, pose_Ry, pose_Rz in radians; NaN without landmarks
    face_size: float  # the face box's longer side, frame pixels
    since_detection: int | None  # frames since the full search last found it; None: no detector (aligned)
    flags: tuple[str, ...]  # reasons, e.g. ("yaw>35", "track-gap"); empty: nothing to distrust

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def assess(face: FaceResult, options: QualityOptions) -> FaceQuality | None:
    """The quality of a found face (None for a frame without one)."""
    if not face.success or face.box is None:
        return None
    pose = head_pose(face.landmarks) if face.landmarks is not None else NO_POSE
    size = float(max(face.box[2], face.box[3]))
    return FaceQuality(face.landmarks, pose, size, face.since_detection, _flags(face, pose, size, options))


def _flags(face: FaceResult, pose: tuple[float, float, float], size: float,
           options: QualityOptions) -> tuple[str, ...]:
    pitch, yaw = math.degrees(pose[0]), math.degrees(pose[1])
    detected = face.since_detection is not None
    reasons = {
        "yaw": f"yaw>{options.max_yaw_deg:g}" if abs(yaw) > options.max_yaw_deg else None,
        "pitch": f"pitch>{options.max_pitch_deg:g}" if abs(pitch) > options.max_pitch_deg else None,
        "face": f"face<{options.min_face_px:g}px" if size < options.min_face_px else None,
        "low-confidence": "low-confidence" if face.confidence < options.min_confidence else None,
        "track-gap": "track-gap" if face.since_missing is not None and face.since_missing <= options.gap_frames
        else None,
        "no-pose": "no-pose" if detected and math.isnan(yaw) else None,
    }
    return tuple(reasons[name] for name in QUALITY_FLAGS if reasons[name] is not None)
