"""Live frames at a pace the model keeps up with: newest-only, evenly strided.

A camera or network stream delivers frames at its own rate whatever the
model does.  Reading them synchronously lets them wait in the capture's
buffer (a network stream's without bound), so the delay from capture to
scores grows.  Here a producer (a reader thread on an OpenCV capture, or
the WebSocket of ``mdhr-live``) ``put``s every frame into a ``LatestSlot``,
which keeps only the newest: nothing is ever queued.  ``PacedFrames`` hands
the consumer (the scoring pipeline) every ``stride``-th frame, the stride
being the smallest that covers the time the consumer takes per frame, so
the windows see evenly spaced frames; a frame's timestamp is when it was
captured, not when it was taken.  Taken frames are numbered 0, 1, 2, ...
(the pipeline's frame index); ``Taken.arrival`` is what the producer put.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

import cv2

from mdhr_runtime.sources.frames import Frame, to_rgb

Payload = TypeVar("Payload")
GAPS = 9  # capture-time gaps whose median is the frame interval
SAMPLES = 16  # frames whose work time sets the stride
SETTLE = 3  # frames before the stride follows the work time
OUTLIER = 4.0  # a work time over this many times the median is a stall, not the pace
HEADROOM = 1.15  # the stride covers 15% more than the mean work time (clip-stage frames take longer)


@dataclass(frozen=True)
class Arrival(Generic[Payload]):
    sequence: int  # the producer's number of the frame (0, 1, 2, ... with no gaps)
    captured: float  # seconds, on the producer's clock
    payload: Payload


class LatestSlot(Generic[Payload]):
    """The newest frame a producer put, and the interval between frames;
    ``take`` waits for a frame at least as new as asked."""

    def __init__(self):
        self._changed = threading.Condition()
        self._newest: Arrival | None = None
        self._count = 0
        self._gaps: deque[float] = deque(maxlen=GAPS)
        self.closed = False

    def put(self, captured: float, payload: Payload) -> int:
        """Keep this frame, dropping the one held; its sequence number."""
        with self._changed:
            if self._newest is not None:
                self._gaps.append(captured - self._newest.captured)
            self._newest = Arrival(self._count, captured, payload)
            self._count += 1
            self._changed.notify_all()
            return self._count - 1

    @property
    def interval(self) -> float | None:
        """Seconds between frames, by their capture times: the median of the
        last ``GAPS`` (a producer that changes its rate is followed within a
        few frames); None before the second frame."""
        with self._changed:
            return statistics.median(self._gaps) if self._gaps else None

    def close(self) -> None:
        """No more frames: ``take`` returns None once it has nothing newer."""
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def take(self, at_least: int) -> Arrival | None:
        """The newest frame once its sequence is >= ``at_least`` (the newest
        at once when it is already past); None when closed first."""
        with self._changed:
            while self._newest is None or self._newest.sequence < at_least:
                if self.closed:
                    return None
                self._changed.wait()
            return self._newest


class StridePacer:
    """Which stride the consumer keeps up with: its work time per frame over
    the frame interval, rounded up.  The work time is the mean of the last
    ``SAMPLES`` frames', leaving out outliers (the first frames open the
    graphs; a busy machine stalls now and then), so periodic costs (a clip
    stage every few frames) count and one stall does not.  Raised as soon as
    needed, lowered only when the lower stride has a fifth more room."""

    def __init__(self):
        self.samples: deque[float] = deque(maxlen=SAMPLES)
        self.stride = 1

    def record(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def work(self) -> float | None:
        """Mean seconds the consumer spends per frame; None before the
        ``SETTLE``-th frame (until then the newest frame is taken whenever the
        consumer is ready: a first frame that opened the graphs says nothing
        of the pace)."""
        if len(self.samples) < SETTLE:
            return None
        typical = statistics.median(self.samples)
        return statistics.fmean([s for s in self.samples if s <= OUTLIER * typical])

    def update(self, interval: float | None) -> int:
        work = self.work
        if work is None or not interval:
            return self.stride
        up = max(1, math.ceil(HEADROOM * work / interval))
        down = max(1, math.ceil(1.2 * HEADROOM * work / interval))
        if up > self.stride:
            self.stride = up
        elif down < self.stride:
            self.stride = down
        return self.stride


@dataclass(frozen=True)
class Taken:
    frame: Frame
    arrival: Arrival  # what the producer put: its sequence number, capture time and payload
    stride: int  # the stride it was taken at


class PacedFrames:
    """Iterate ``Frame``s taken from ``slot`` at an even stride (module doc).
    ``decode`` turns a payload into RGB (None: skip the frame).  The time
    between handing out a frame and being asked for the next is the
    consumer's work time."""

    def __init__(self, slot: LatestSlot, decode: Callable[[object], object | None]):
        self.slot, self.decode = slot, decode
        self.pacer = StridePacer()
        self.taken: Taken | None = None  # the last frame handed out
        self.count = 0  # frames handed out
        self.skipped = 0  # frames of the producer never taken
        self._start: float | None = None

    @property
    def stride(self) -> int:
        return self.pacer.stride

    def __iter__(self) -> Iterator[Frame]:
        handed_at, wanted = None, 0
        while True:
            if handed_at is not None:
                self.pacer.record(time.monotonic() - handed_at)
            stride = self.pacer.update(self.slot.interval)
            arrival = self.slot.take(wanted)
            if arrival is None:
                return
            rgb = self.decode(arrival.payload)
            previous = None if self.taken is None else self.taken.arrival.sequence
            wanted = arrival.sequence + stride
            if rgb is None:
                handed_at = None
                continue
            if self._start is None:
                self._start = arrival.captured
            frame = Frame(index=self.count, timestamp=arrival.captured - self._start, rgb=rgb)
            self.skipped += 0 if previous is None else arrival.sequence - previous - 1
            self.taken = Taken(frame, arrival, stride)
            self.count += 1
            handed_at = time.monotonic()
            yield frame


class CaptureReader:
    """A thread that reads an OpenCV capture as fast as it delivers and puts
    every frame into a ``LatestSlot`` (so the capture's own buffer never
    fills), timestamped by the clock at reading; it closes the slot when the
    capture ends and releases the capture when stopped."""

    def __init__(self, capture: cv2.VideoCapture, slot: LatestSlot):
        self.capture, self.slot = capture, slot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="mdhr-capture", daemon=True)

    def start(self) -> "CaptureReader":
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                ok, image = self.capture.read()
                if not ok or image is None:
                    return
                self.slot.put(time.monotonic(), image)
        finally:
            self.slot.close()

    def stop(self) -> None:
        self._stop.set()
        self.slot.close()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.capture.release()


class CapturedFrames(PacedFrames):
    """The frames of a live capture, newest-only at an even stride (module
    doc): the reader thread runs while they are iterated."""

    def __init__(self, capture: cv2.VideoCapture):
        super().__init__(LatestSlot(), to_rgb)
        self.capture = capture

    def __iter__(self) -> Iterator[Frame]:
        reader = CaptureReader(self.capture, self.slot).start()
        try:
            yield from super().__iter__()
        finally:
            reader.stop()
