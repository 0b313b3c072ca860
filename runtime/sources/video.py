"""Decoding a video file with FFmpeg's libraries (PyAV): frames in their
displayed orientation with their presentation times, and the timeline
verdict (``timeline.py``) of whether the file was read to its end.

PyAV rather than OpenCV's VideoCapture because the verdict needs what
VideoCapture hides: the stream's declared duration, each frame's
presentation time and duration, and the decoder's errors.  The pixels are
the same (both convert with FFmpeg's swscale; tests compare them).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from mdhr.errors import InputError
from mdhr_runtime.sources.timeline import Timeline

# Matroska stores a video track's duration as a tag, 'HH:MM:SS.nnnnnnnnn'.
_TAG_DURATION = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says before decoding."""

    fps: float | None  # the header's frame rate, None when it has none
    frame_count: int | None  # the container's count, else duration x rate (an estimate); None: unknown
    declared_end: float | None  # end of the video stream (s, stream clock); None: not declared


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise InputError(f"cannot open {path} as a video ({e.strerror}): the file is damaged, cut short before "
                         "its index was written, or not a video FFmpeg decodes; try converting it to mp4 (H.264)"
                         ) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} holds no video stream (audio or data only); give a video file")
    return container


def _declared_end(container, stream) -> float | None:
    """The end time of the video stream as the container declares it."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration:
        return start + float(stream.duration * stream.time_base)
    tag = _TAG_DURATION.match(stream.metadata.get("DURATION", ""))
    if tag:
        hours, minutes, seconds = tag.groups()
        return start + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    # The container's own duration is that of its longest stream: it speaks
    # for the video only when the video is all there is.
    if container.duration and len(container.streams) == 1:
        return (container.start_time or 0) / 1e6 + container.duration / 1e6
    return None


# A header rate this high or higher may be a time base, not a rate
# (Matroska's 1 kHz clock); such a rate is measured from the frames instead.
SUSPECT_GUESSED_RATE = 1000.0
# Frames decoded to measure a rate the header does not give.
RATE_SAMPLE_FRAMES = 16


def _header_rate(stream) -> float | None:
    """The stream's average rate (frames over duration, from the container's
    timing), else its guessed rate where that cannot be a time base."""
    average = float(stream.average_rate) if stream.average_rate else 0.0
    if 0 < average and math.isfinite(average):
        return average
    guessed = float(stream.guessed_rate) if stream.guessed_rate else 0.0
    return guessed if 0 < guessed < SUSPECT_GUESSED_RATE else None


def probe(path: Path) -> VideoInfo:
    """The header's rate, count and duration; one frame decoded, so a file
    that opens but holds no picture fails here, before any output starts.
    A stream whose header gives no trustworthy rate has it measured from
    the presentation times of its first frames."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _header_rate(stream)
        end = _declared_end(container, stream)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if container.format.name == "avi" and stream.frames and fps:
            # An AVI's header keeps the frame count its writer finished with
            # (AVI has no edit lists), while FFmpeg's duration for an AVI cut
            # before its index is only what a scan found: the count declares.
            end = max(end or 0.0, start + stream.frames / fps)
        frames_stored = stream.frames
    finally:
        container.close()
    times = _first_times(path, VideoInfo(fps, None, end), RATE_SAMPLE_FRAMES if fps is None else 1)
    if fps is None:
        fps = _measured_rate(times)
    count = frames_stored or (round((end - start) * fps) if end is not None and fps else None)
    return VideoInfo(fps, count or None, end)


def _first_times(path: Path, info: VideoInfo, frames: int) -> list[float]:
    """The presentation times of the first ``frames`` frames; refuses a video
    of which not one frame decodes."""
    times = []
    decoded = iter(VideoPass(path, info, fallback_fps=30.0))
    try:
        for time, _ in decoded:
            times.append(time)
            if len(times) >= frames:
                break
    finally:
        decoded.close()
    if not times:
        raise InputError(f"no frame could be decoded from {path}: the video is empty or damaged")
    return times


def _measured_rate(times: list[float]) -> float | None:
    """Frames per second from the median interval of presentation times."""
    steps = np.diff(np.asarray(sorted(t for t in times if math.isfinite(t))))
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if len(steps) else None


def _displayed(frame) -> np.ndarray:
    """RGB pixels turned as the display matrix says (phones record sideways
    and store the turn): rotation is counter-clockwise degrees."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


class VideoPass:
    """One pass over a video: iterate for (presentation time in s, RGB
    frame) of each frame shown; ``timeline`` holds what the pass saw.  A
    packet the demuxer flags or the decoder refuses is noted on the timeline
    and skipped, and decoding goes on with the next one."""

    def __init__(self, path: Path, info: VideoInfo, fallback_fps: float):
        self.path = path
        self.timeline = Timeline(info.declared_end, 1.0 / (info.fps or fallback_fps))

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        import av

        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame and slice threads: 4K decodes several times faster
            time_base = stream.time_base or Fraction(1, 90000)
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)  # at the end, an empty packet flushes the decoder
                except StopIteration:
                    return
                except av.error.FFmpegError as e:  # the demuxer cannot go on: flush what the decoder holds
                    self.timeline.error(e.strerror or type(e).__name__)
                    packet = None
                if packet is not None and packet.is_corrupt:
                    self.timeline.error("a damaged packet")
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError as e:
                    self.timeline.error(e.strerror or type(e).__name__)
                    continue
                for frame in frames:
                    time = float(frame.pts * time_base) if frame.pts is not None else math.nan
                    if math.isfinite(time):
                        self.timeline.frame(time, float(frame.duration * time_base) if frame.duration else 0.0)
                    yield time, _displayed(frame)
                if packet is None:
                    return
        finally:
            container.close()
