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
* the model's temporal context: a frame is scored by a window of T frames
  (``WindowPlan``).  A segment runs the model from the start of its first
  frame's window and reads on to the end of its last frame's window
  (``WindowPlan.reach``), in both window modes: official windows need no
  frames beyond the segment when segments start on window starts; centred
  ones read about T/2 frames on each side.  Those frames run through the
  model too and their rows are dropped (the overlap cost).

So each segment decodes from frame 0 (cheap, and the single run's exact
frames), tracks from ``read_from`` (a search-grid frame), runs the model
from ``scored_from`` and keeps the rows of frames [start, stop).  The
pipeline (``pipeline.Span``) does all of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mdhr.errors import InputError, MDHRError, param
from mdhr_runtime.faces.tracking import REDETECT_EVERY
from mdhr_runtime.pipeline import Span
from mdhr_runtime.results.table import FrameTable, RunFacts
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.windows.streams import WindowPlan

# Frames of tracking before a segment's first scored frame.  Measured
# (scripts/corpora_segment_warmup.py, 2026-11-25): on 460 frames of synthetic
# footage (a still, a slow and a fast face, a faceless stretch), trackers
# started cold on 12 grid frames matched the single run's smoothed box and
# roll within 1e-3 px after at most 54 frames, 1e-5 after 88 and 1e-8 after
# 108.  120 frames (4 s at 30 fps) cover the slowest case measured.
TRACKER_WARMUP_FRAMES = 120


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of a video, scored by one worker (``stop`` None:
    to the end of the video).  It tracks from ``read_from``, runs the model
    from ``scored_from`` and reads up to ``read_to`` (None: the end)."""

    start: int
    stop: int | None
    read_from: int
    scored_from: int
    read_to: int | None = None

    @property
    def frames(self) -> int | None:
        return None if self.stop is None else self.stop - self.start

    @property
    def span(self) -> Span:
        return Span(self.read_from, self.scored_from, self.start, self.stop, self.read_to)


WHOLE_VIDEO = Segment(0, None, 0, 0)


@dataclass(frozen=True)
class SegmentPlan:
    """How to cut videos scored in ``windows``: segments of ``length`` frames
    (rounded up to a multiple of the hop, so segments start on window
    starts), each warmed up and given its windows' context as the module
    doc says."""

    length: int
    windows: WindowPlan
    warmup_frames: int = TRACKER_WARMUP_FRAMES
    search_grid: int = REDETECT_EVERY

    def __post_init__(self):
        if self.length < 1 or self.search_grid < 1:
            raise InputError(f"{param('segment_frames')} must be at least 1 frame, got {self.length}")

    @property
    def step(self) -> int:
        hop = self.windows.hop
        return math.ceil(self.length / hop) * hop

    def segments(self, frames: int | None) -> list[Segment]:
        """The segments of a video of ``frames`` frames (None: unknown, one
        segment).  The last runs to the end of the stream, whatever the
        container declared."""
        if frames is None or frames <= self.step:
            return [WHOLE_VIDEO]
        starts = list(range(0, frames, self.step))
        # A last piece shorter than the warm-up is cheaper done by its
        # neighbour; one shorter than a window would need the previous
        # segment's frames for the end rule of centred windows.
        shortest = max(self.windows.frames, min(self.step, self.warmup_frames))
        while len(starts) > 1 and frames - starts[-1] < shortest:
            starts.pop()
        if len(starts) == 1:
            return [WHOLE_VIDEO]
        stops: list[int | None] = starts[1:] + [None]
        return [self._segment(start, stop) for start, stop in zip(starts, stops)]

    def _segment(self, start: int, stop: int | None) -> Segment:
        scored_from, read_to = self.windows.reach(start, stop)
        read_from = max(0, (scored_from - self.warmup_frames) // self.search_grid * self.search_grid)
        return Segment(start, stop, read_from, scored_from, read_to)


@dataclass
class SegmentResult:
    """A segment's rows, and whether the video ran out before its end
    (``short``: a truncated or damaged video)."""

    segment: Segment
    table: FrameTable
    short: bool
    frames_declared: int | None


def predict_segment(detector, source: str | Path, segment: Segment, windows: str, hop: int | None = None,
                    progress: Callable[[int], None] | None = None) -> SegmentResult:
    """The rows of frames [segment.start, segment.stop) of a video, as a run
    of ``detector.predict_video`` from frame 0 would give them."""
    frames = FrameSource(source)
    scoring = detector.scoring(windows, hop, span=segment.span)
    report = None if progress is None else lambda index: progress(max(0, index + 1 - segment.start))
    table = scoring.run(frames, after_frame=report)
    # A segment that got all its frames stopped on purpose; one that did not
    # saw the stream end, and the source's timeline says whether too soon
    # (a frame count is only the container's estimate).
    ended = segment.stop is None or len(table) < segment.frames
    short = ended and frames.truncated
    table = scoring.settle(complete=not short, frames_declared=frames.frame_count, shortfall=frames.shortfall)
    return SegmentResult(segment, table, short, frames.frame_count)


def stitch(results: Sequence[SegmentResult], au_names: Sequence[str], threshold: float) -> FrameTable:
    """One table from the segments of a video, in order.  It is complete
    when no segment ran short; its rows stop where the video did."""
    ordered = sorted(results, key=lambda r: r.segment.start)
    used = []
    for result in ordered:
        used.append(result)
        if result.short:
            break
    facts = RunFacts(complete=not any(r.short for r in used),
                     frames_declared=ordered[0].frames_declared if ordered else None,
                     other_faces=max((r.table.other_faces for r in used), default=0),
                     model_calls=sum(r.table.model_calls for r in used),
                     shortfall=next((r.table.shortfall for r in used if r.short), ""))
    tables = [r.table for r in used] or [FrameTable(au_names, threshold)]
    table = FrameTable.joined(tables, facts)
    indices = [row.index for row in table.rows]  # one or more rows a frame (one per face)
    if sorted(set(indices)) != list(range(len(set(indices)))) or indices != sorted(indices):
        raise MDHRError("segments did not join up frame by frame; please report this")
    return table
