"""Live sources: a camera (device index) or any stream OpenCV opens (a URL),
read by a thread that keeps only the newest frame, and handed to the model
at an even stride it keeps up with (``latest.py``), each frame timestamped
by the clock at reading.  A path to a video file given as a live source is
read as the file it is (every frame, its own timeline, as ``FrameSource``
reads them), so scoring it live gives what scoring the file gives."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import cv2

from mdhr.errors import InputError
from mdhr_runtime.sources.frames import Frame, FrameSource
from mdhr_runtime.sources.latest import CapturedFrames


def open_source(source: str) -> cv2.VideoCapture:
    """A device index ("0") or anything else OpenCV's VideoCapture opens."""
    capture = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        what = f"camera {source}" if source.isdigit() else f"stream {source}"
        raise InputError(f"cannot open {what}: check that it is connected and not in use by another program "
                         "(or that the URL is right)")
    return capture


def live_source(source: str) -> Iterable[Frame]:
    """The frames of ``--camera SOURCE``: a video file's own, else the
    camera's or stream's, paced (opened now, so a bad source is refused
    before the first frame is asked for)."""
    if not source.isdigit() and Path(source).is_file():
        return FrameSource(source)
    return CapturedFrames(open_source(source))


def quiet_ffmpeg(verbose: bool) -> None:
    """FFmpeg (inside OpenCV) prints its own decoder complaints to stderr;
    the commands say what matters in one line, so silence it unless
    --verbose.  OpenCV reads the setting once, when it first opens a video."""
    if not verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
