"""The scoring options mdhr-run, mdhr-batch and mdhr-live share (the quality
flags among them), declared once so that each means the same (and reads the
same in --help) in all three."""
from __future__ import annotations

import functools

import click

from mdhr_runtime.choices import (
    BACKENDS,
    DEFAULT_FACE_DETECTOR,
    DEFAULT_FACES,
    DEFAULT_WINDOWS,
    FACE_DETECTORS,
    FACE_MODES,
    WINDOW_MODES,
)
from mdhr_runtime.faces import quality
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE


def _together(*options):
    """One decorator adding ``options`` in the order given."""
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


window_options = _together(
    click.option("--windows", type=click.Choice(WINDOW_MODES), default=DEFAULT_WINDOWS, show_default=True,
                 help="centred: each frame scored near the middle of its own window (no jumps at window "
                      "edges); official: the paper's non-overlapping windows."),
    click.option("--hop", type=int, help="Centred windows: frames between window starts (default 1: every "
                 "frame at the middle of its window, scores without a period)."))

face_options = _together(
    click.option("--faces", type=click.Choice(FACE_MODES), default=DEFAULT_FACES, show_default=True,
                 help="largest: one face per frame (a note says when others were there); all: every face, "
                      "tracked, with a face_id column (one row per frame and face)."),
    click.option("--min-face", type=int, default=DEFAULT_MIN_FACE, show_default=True, metavar="PX",
                 help="--faces all: ignore faces whose box is smaller than PX pixels."))

face_detector_option = click.option(
    "--face-detector", type=click.Choice(FACE_DETECTORS), default=DEFAULT_FACE_DETECTOR, show_default=True,
    help="mtcnn: more accurate, with landmarks for levelling the crop; haar: OpenCV cascade.")


def backend_option(text: str):
    """--backend, with what ``auto`` chooses in this command."""
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help=text)


# The quality flags' thresholds (faces/quality.py), as options: the command
# gets them as one ``quality_flags`` dict of QualityOptions' fields and makes
# the QualityOptions (which checks them) with its other checks.
_QUALITY_OPTIONS = (
    ("--flag-yaw", "max_yaw_deg", float, quality.MAX_YAW_DEG, "DEG",
     "Flag rows whose head yaw (pose_Ry) exceeds DEG degrees either way."),
    ("--flag-pitch", "max_pitch_deg", float, quality.MAX_PITCH_DEG, "DEG",
     "Flag rows whose head pitch (pose_Rx) exceeds DEG degrees either way."),
    ("--flag-face", "min_face_px", int, quality.MIN_FACE_PX, "PX",
     "Flag rows whose face box's longer side is under PX pixels."),
    ("--flag-confidence", "min_confidence", float, quality.MIN_CONFIDENCE, "C",
     "Flag rows whose detector confidence is under C."),
    ("--flag-gap", "gap_frames", int, quality.GAP_FRAMES, "N",
     f"Flag the first N frames after the face was not found (0 to {quality.MAX_GAP_FRAMES}; 0: never)."),
)



def quality_options(command):
    """The --flag-* options, handed to ``command`` as ``quality_flags``."""
    @functools.wraps(command)
    def gathered(*args, **kwargs):
        kwargs["quality_flags"] = {field: kwargs.pop(field) for _, field, *_ in _QUALITY_OPTIONS}
        return command(*args, **kwargs)

    for flag, field, kind, default, metavar, text in reversed(_QUALITY_OPTIONS):
        gathered = click.option(flag, field, type=kind, default=default, show_default=True, metavar=metavar,
                                help=text)(gathered)
    return gathered
