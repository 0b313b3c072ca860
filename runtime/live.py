"""Live sources: a camera (device index) or any stream OpenCV opens (URL, or
a video file read as if live), scored frame by frame with ``FrameStream``.

``run_live`` reads until the source ends or the user presses Ctrl-C, and
returns the rows it has; a status callback gets one line per frame:
frames/s, per-frame latency (frame read to row final) and the AUs active in
the latest row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.crop import crop_stream
from mdhr_runtime.frames import Frame, to_rgb
from mdhr_runtime.table import FrameTable


def open_source(source: str) -> cv2.VideoCapture:
    """A device index ("0") or anything else OpenCV's VideoCapture opens."""
    capture = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        what = f"camera {source}" if source.isdigit() else f"stream {source}"
        raise MDHRError(f"cannot open {what}: check that it is connected and not in use by another program "
                        "(or that the URL is right)")
    return capture


def live_frames(capture: cv2.VideoCapture) -> Iterator[Frame]:
    """Frames as they arrive, timestamped by the clock at reading."""
    start, index = time.monotonic(), 0
    try:
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield Frame(index=index, timestamp=time.monotonic() - start, rgb=to_rgb(image))
            index += 1
    finally:
        capture.release()


@dataclass
class LiveResult:
    table: FrameTable
    interrupted: bool
    seconds: float


def run_live(detector, source: str, windows: str, hop: int | None,
             status: Callable[[str], None] = lambda line: None, max_frames: int | None = None) -> LiveResult:
    """Score ``source`` live with ``detector`` (an ``AUDetector``) until it
    ends, Ctrl-C, or ``max_frames``."""
    from mdhr_runtime.detector import FACE_DETECTORS
    from mdhr_runtime.tracking import FaceTracker

    stream = detector.stream(windows, hop)
    table = FrameTable(detector.au_names, detector.threshold)
    tracker = FaceTracker(FACE_DETECTORS[detector.face_detector]())
    read_at: dict[int, float] = {}  # frame index -> when it was read, until its row is final
    latest_ms, start, interrupted = 0.0, time.perf_counter(), False

    def add(rows) -> None:
        nonlocal latest_ms
        now = time.perf_counter()
        for row in rows:
            table.add(row.frame, row.scores)
            latest_ms = 1e3 * (now - read_at.pop(row.frame.index))

    def frames() -> Iterator[Frame]:
        for frame in live_frames(open_source(source)):
            read_at[frame.index] = time.perf_counter()
            yield frame

    try:
        for cropped in crop_stream(frames(), tracker):
            add(stream.push(cropped))
            elapsed = time.perf_counter() - start
            status(status_line(stream.count, elapsed, latest_ms, stream.plan.latency_frames, table))
            if max_frames is not None and stream.count >= max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    add(stream.finish())
    return LiveResult(table, interrupted, time.perf_counter() - start)


def status_line(frames: int, seconds: float, latency_ms: float, latency_frames: int, table: FrameTable) -> str:
    fps = frames / seconds if seconds > 0 else 0.0
    last = table.rows[-1] if table.rows else None
    if last is None:
        activity = "waiting for the first window"
    elif last.scores is None:
        activity = "no face"
    else:
        active = [au for au, s in zip(table.au_names, last.scores) if np.isfinite(s) and s >= table.threshold]
        activity = "active: " + (" ".join(active) if active else "none")
    return (f"{frames} frames  {fps:.1f} fps  latency {latency_ms:.0f} ms "
            f"(+{latency_frames} frames of context)  {activity}")
