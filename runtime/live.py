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
from mdhr_runtime.crops.crop import crop_stream
from mdhr_runtime.sources.frames import Frame, to_rgb
from mdhr_runtime.results.table import FrameTable


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


READ_TIMES = 256


@dataclass
class LiveResult:
    table: FrameTable
    interrupted: bool
    seconds: float


def run_live(detector, source: str, windows: str, hop: int | None,
             status: Callable[[str], None] = lambda line: None, max_frames: int | None = None,
             faces: str = "largest", min_face: int | None = None) -> LiveResult:
    """Score ``source`` live with ``detector`` (an ``AUDetector``) until it
    ends, Ctrl-C, or ``max_frames``; ``faces="all"`` scores every face."""
    stream = detector.stream(windows, hop)
    table = FrameTable(detector.au_names, detector.threshold, face_ids=faces == "all")
    read_at: dict[int, float] = {}  # frame index -> when it was read (the last READ_TIMES frames)
    latest_ms, start, interrupted = 0.0, time.perf_counter(), False

    def add(rows) -> None:
        nonlocal latest_ms
        now = time.perf_counter()
        for face_id, row in rows:
            table.add(row.frame, row.scores, face_id)
            latest_ms = 1e3 * (now - read_at.get(row.frame.index, now))

    def frames() -> Iterator[Frame]:
        for frame in live_frames(open_source(source)):
            read_at[frame.index] = time.perf_counter()
            read_at.pop(frame.index - READ_TIMES, None)  # rows are final well before (windows of T frames)
            yield frame

    scorer = AllFaces(detector, windows, hop, min_face) if faces == "all" else LargestFace(stream, detector)
    count = 0
    try:
        for frame in frames():
            add(scorer.push(frame))
            count += 1
            elapsed = time.perf_counter() - start
            status(status_line(count, elapsed, latest_ms, stream.plan.latency_frames, table))
            if max_frames is not None and count >= max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    add(scorer.finish())
    table.sort()
    if isinstance(scorer, LargestFace):
        table.other_faces = scorer.tracker.most_others
    return LiveResult(table, interrupted, time.perf_counter() - start)


class LargestFace:
    """Frame in, the rows that became final out, as (face_id None, row)."""

    def __init__(self, stream, detector):
        from mdhr_runtime.detector import FACE_DETECTORS
        from mdhr_runtime.faces.tracking import FaceTracker

        self.stream = stream
        self.tracker = FaceTracker(FACE_DETECTORS[detector.face_detector]())

    def push(self, frame: Frame) -> list:
        (cropped,) = crop_stream([frame], self.tracker)
        return [(None, row) for row in self.stream.push(cropped)]

    def finish(self) -> list:
        return [(None, row) for row in self.stream.finish()]


class AllFaces:
    """``LargestFace`` for every face (``multiface.py``): (face_id, row)."""

    def __init__(self, detector, windows: str, hop: int | None, min_face: int | None):
        from mdhr_runtime.detector import FACE_DETECTORS
        from mdhr_runtime.windows.multiface import TrackStreams
        from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE, MultiFaceTracker
        from mdhr_runtime.timing import StageClock

        self.tracker = MultiFaceTracker(FACE_DETECTORS[detector.face_detector](),
                                        min_face=min_face or DEFAULT_MIN_FACE)
        self.streams = TrackStreams(lambda: detector.stream(windows, hop))
        self.clock = StageClock()

    def push(self, frame: Frame) -> list:
        return self.streams.push(frame, self.tracker, self.tracker.update(frame.rgb, frame.timestamp), self.clock)

    def finish(self) -> list:
        return self.streams.finish(self.clock)


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
