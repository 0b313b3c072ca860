"""Every choice list a user picks from, defined once: the library, the
commands' options and their checks all read them from here."""
from __future__ import annotations

# How a bundle runs: auto chooses (backends/selection.py); the others force one.
BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino", "openvino-bf16", "int8")
# largest: one face per frame (the largest, then the one tracked); all: every
# face, each with its own face_id.
FACE_MODES = ("largest", "all")
DEFAULT_FACES = "largest"
# official: the paper's non-overlapping windows; centred: each frame scored
# near the middle of its own window (windows/streams.py).
WINDOW_MODES = ("official", "centred")
DEFAULT_WINDOWS = "centred"
# The face detectors faces/registry.py builds.
FACE_DETECTORS = ("mtcnn", "haar")
DEFAULT_FACE_DETECTOR = "mtcnn"
# Why a row's AU values are flagged as not to be trusted (faces/quality.py),
# in the order a row lists them.
QUALITY_FLAGS = ("yaw", "pitch", "face", "low-confidence", "track-gap", "no-pose")
