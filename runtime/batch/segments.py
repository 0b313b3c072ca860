"""Long videos cut into segments that score in parallel and stitch back
into the table a single run from frame 0 gives.

A run's state at frame ``s`` depends on earlier frames in two ways:

* the face tracker: its 1-euro filter carries the smoothed box from frame
  to frame, and its detections chain (each frame refines the last box).
  The chain restarts on every full search, which runs on a fixed grid of
  frames (``FaceTracker.redetect_every``), so a segment that starts
  tracking on a grid frame makes the same detections as the single run
  from there on; the filter forgets its starting point geometrically, so
  ``warmup_frames`` of tracking before the first scored frame bring the
  box to within a hair of the single run's (``TRACKER_WARMUP_FRAMES``).
* the model's temporal context: a window of T frames is scored as a whole.
  Segment starts are aligned to window starts (``align``), and
  ``context_frames`` is how many frames before a segment's first scored
  frame the window scheme needs (0 for the official non-overlapping
  windows; a centred scheme needs about T/2).  Those frames run through the
  model too and their rows are dropped.

So each segment decodes from ``read_from`` (a search-grid frame), tracks
only up to ``scored_from``, runs the model from ``scored_from`` (a window
start) and keeps the rows from ``start`` on.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.windows.clips import ClipWindows
from mdhr_runtime.crops.crop import Cropper, crop_stream, to_model_input
from mdhr_runtime.faces.tracking import FaceTracker
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.results.table import FrameTable

# Frames of tracking before a segment's first scored frame.  Measured
# (benchmarks/measure_warmup.py, 2026-11-25): on 460 frames of synthetic
# footage (a still, a slow and a fast face, a faceless stretch), trackers
# started cold on 12 grid frames matched the single run's smoothed box and
# roll within 1e-3 px after at most 54 frames, 1e-5 after 88 and 1e-8 after
# 108.  120 frames (4 s at 30 fps) cover the slowest case measured.
TRACKER_WARMUP_FRAMES = 120

# Segments are cut on official window boundaries (``align`` = T), so a corpus
# is scored in official windows, whole videos included, and a stitched video
# equals ``mdhr-run --windows official``.  Centred windows would need
# segments that overlap by half a window of scored context: a follow-up.
WINDOWS = "official"


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of a video, scored by one worker (``stop`` None:
    to the end of the video).  It decodes from ``read_from`` and runs the
    model from ``scored_from``."""

    start: int
    stop: int | None
    read_from: int
    scored_from: int

    @property
    def frames(self) -> int | None:
        return None if self.stop is None else self.stop - self.start


@dataclass(frozen=True)
class SegmentPlan:
    """How to cut videos: segments of ``length`` frames (rounded up to a
    multiple of ``align``), each warmed up as the module doc says."""

    length: int
    align: int  # window starts: T for official windows
    context_frames: int = 0  # model context needed before a segment's first frame
    warmup_frames: int = TRACKER_WARMUP_FRAMES
    search_grid: int = 30  # FaceTracker.redetect_every

    def __post_init__(self):
        if self.length < 1 or self.align < 1 or self.search_grid < 1:
            raise MDHRError(f"segment length must be at least 1 frame, got {self.length}")

    @property
    def step(self) -> int:
        return math.ceil(self.length / self.align) * self.align

    def segments(self, frames: int | None) -> list[Segment]:
        """The segments of a video of ``frames`` frames (None: unknown, one
        segment).  The last runs to the end of the stream, whatever the
        container declared."""
        if frames is None or frames <= self.step:
            return [Segment(0, None, 0, 0)]
        starts = list(range(0, frames, self.step))
        # A last piece shorter than the warm-up is cheaper done by its neighbour.
        if len(starts) > 1 and frames - starts[-1] < min(self.step, self.warmup_frames):
            starts.pop()
        stops: list[int | None] = starts[1:] + [None]
        return [self._segment(start, stop) for start, stop in zip(starts, stops)]

    def _segment(self, start: int, stop: int | None) -> Segment:
        scored_from = max(0, (start - self.context_frames) // self.align * self.align)
        read_from = max(0, (scored_from - self.warmup_frames) // self.search_grid * self.search_grid)
        return Segment(start, stop, read_from, scored_from)


@dataclass
class SegmentResult:
    """A segment's rows, and whether the video ran out before its end
    (``short``: a truncated or damaged video)."""

    segment: Segment
    table: FrameTable
    short: bool
    frames_declared: int | None


def predict_segment(detector, source: str | Path, segment: Segment,
                    progress: Callable[[int], None] | None = None) -> SegmentResult:
    """The rows of frames [segment.start, segment.stop) of a video, as a run
    of ``detector.predict_video`` from frame 0 would give them."""
    from mdhr_runtime.detector import FACE_DETECTORS

    frames = FrameSource(source)
    tracker = FaceTracker(FACE_DETECTORS[detector.face_detector]())
    if segment.read_from % tracker.redetect_every:
        raise ValueError(f"segment read from frame {segment.read_from}, off the tracker's search grid")
    table = FrameTable(detector.au_names, detector.threshold)
    stream = iter(frames)
    try:
        # Decoding from frame 0 (not seeking) gives the single run's exact
        # frames and timestamps whatever the codec; decoding is cheap next
        # to detection and the model.
        ahead = itertools.islice(stream, segment.read_from, segment.scored_from)
        carry = _track(tracker, ahead)
        limit = None if segment.stop is None else segment.stop - segment.scored_from
        crops = crop_stream(itertools.islice(stream, limit), tracker)
        windows = ClipWindows.for_input_shape(detector.bundle.input_shape)
        for batch in windows.batches(crops, carry=carry):
            scores = detector.runner.infer(batch.clips)["au_scores"]
            for frame, frame_scores in batch.rows(scores):
                if frame.index >= segment.start:
                    table.add(frame, frame_scores)
            if progress is not None:
                progress(len(table))
    finally:
        stream.close()
    # A segment that got all its frames stopped on purpose; one that did not
    # saw the stream end, and the source's timeline says whether too soon
    # (a frame count is only the container's estimate).
    ended = segment.stop is None or len(table) < segment.frames
    short = ended and frames.truncated
    table.complete, table.shortfall = not short, frames.shortfall if short else ""
    return SegmentResult(segment, table, short, frames.frame_count)


def _track(tracker: FaceTracker, frames) -> np.ndarray | None:
    """Run the tracker over warm-up frames; the model input of the last
    face among them (what the windows carry into faceless frames)."""
    last = None
    for frame in frames:
        face = tracker.update(frame.rgb, frame.timestamp)
        if face.success:
            last = (frame.rgb, face)
    return None if last is None else to_model_input(Cropper().crop(*last))


def stitch(results: Sequence[SegmentResult], au_names: Sequence[str], threshold: float) -> FrameTable:
    """One table from the segments of a video, in order.  It is complete
    when no segment ran short; its rows stop where the video did."""
    table = FrameTable(au_names, threshold, face_ids=any(r.table.face_ids for r in results))
    ordered = sorted(results, key=lambda r: r.segment.start)
    for result in ordered:
        table.rows.extend(result.table.rows)
        if result.short:
            table.complete, table.shortfall = False, result.table.shortfall
            break
    indices = [row.index for row in table.rows]  # one or more rows a frame (one per face)
    if sorted(set(indices)) != list(range(len(set(indices)))) or indices != sorted(indices):
        raise MDHRError("segments did not join up frame by frame; please report this")
    table.frames_declared = ordered[0].frames_declared if ordered else None
    return table
