"""The face detectors a run can use, by the names of ``choices.FACE_DETECTORS``."""
from __future__ import annotations

from mdhr.errors import InputError, param
from mdhr_runtime.choices import FACE_DETECTORS
from mdhr_runtime.faces.detection import FaceDetector, HaarDetector, MTCNNDetector

_BUILDERS = dict(zip(FACE_DETECTORS, (MTCNNDetector, HaarDetector)))


def check_face_detector(name: str) -> None:
    if name not in _BUILDERS:
        raise InputError(f"unknown {param('face_detector')} {name!r}: choose {', '.join(FACE_DETECTORS)}")


def make_face_detector(name: str) -> FaceDetector:
    check_face_detector(name)
    return _BUILDERS[name]()
