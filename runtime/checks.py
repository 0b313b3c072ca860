"""Checks of the options a user gives (the commands' and ``AUDetector``'s),
each refused in one line that says what to give instead."""
from __future__ import annotations

import math

from mdhr.errors import InputError, param
from mdhr_runtime.choices import FACE_MODES


def check_faces(faces: str, min_face: int, aligned: bool = False) -> None:
    if faces not in FACE_MODES:
        raise InputError(f"unknown face mode {param('faces')} {faces!r}: choose {' or '.join(FACE_MODES)}")
    if not 1 <= min_face <= 10000:
        raise InputError(f"{param('min_face')} must be a face size in pixels (1 to 10000), got {min_face}")
    if aligned and faces == "all":
        raise InputError(f"{param('faces')} all needs face detection, and {param('aligned')} frames are one face "
                         "crop each: drop one of the two")


def check_threshold(threshold: float) -> float:
    """A decision threshold on the AU score, a cosine: finite, in [-1, 1]."""
    value = float(threshold)
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise InputError(f"{param('threshold')} {threshold} is outside [-1, 1]: AU scores are cosine similarities, "
                         "so give a number from -1 to 1 (the default is 0.5)")
    return value
