"""The one scoring loop: frames -> faces -> crops -> windows -> rows.

Every entry point scores through ``Scoring``: ``AUDetector.predict_video``
(files, folders, images), the live loop (``sources/live.py``: a camera or
stream, one frame at a time), ``mdhr-batch`` (whole videos, and segments of
long ones) and the benchmarks.  What varies is said by the arguments, not by
another copy of the loop:

* ``ScoreOptions.faces``: "largest" (one ``FaceTracker``, one window stream)
  or "all" (one ``MultiFaceTracker``, one stream per track: ``multiface.py``).
* ``ScoreOptions.windows``: official windows (the whole-model graph,
  ``windows/whole.py``) or centred windows (the frame and clip stages,
  ``windows/streams.py``); the model says which stream serves a plan
  (``AUDetector.window_scorer``) and opens its graphs then.
* ``Span``: which frames are decoded, tracked, scored and kept: all of them
  (a whole video, a live source) or a segment (``batch/segments.py``).

The tracker is made here (``make_tracker``) and nowhere else.  Windows in
which no frame has a face never run the clip stage or the whole model, and
a faceless frame never runs the frame stage.

Each frame is first *prepared* (tracked and cropped: ``_prepare``) and then
*scored* (the model: ``_score``).  ``run`` prepares on a reader thread up to
``READ_AHEAD`` frames ahead (``prefetch.py``) while the model scores, so
decoding and detection overlap the model; the frames go through both steps
in order either way, so the rows are the same.  ``push`` (the live loop)
does both steps at once.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from mdhr.errors import InputError, param
from mdhr_runtime.backends.sessions import Started
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.choices import DEFAULT_FACE_DETECTOR, DEFAULT_FACES
from mdhr_runtime.crops.crop import CroppedFrame, Cropper, Normaliser, aligned_crop, crop_stream, face_crop
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE, MultiFaceTracker, TrackedFaces
from mdhr_runtime.faces.quality import QualityOptions, assess
from mdhr_runtime.faces.registry import check_face_detector, make_face_detector
from mdhr_runtime.faces.tracking import FaceTracker
from mdhr_runtime.prefetch import prefetched
from mdhr_runtime.results.table import FrameTable, RunFacts
from mdhr_runtime.sources.frames import Frame, FrameSource
from mdhr_runtime.timing import StageClock
from mdhr_runtime.windows.clips import ClipBatch, ClipWindows
from mdhr_runtime.windows.multiface import FaceRow, TrackStreams
from mdhr_runtime.windows.streams import WindowPlan


@dataclass(frozen=True)
class Span:
    """Frames of a source a run touches.  It decodes from frame 0 (decoding
    is cheap next to detection and gives a run from frame 0's exact frames)
    but tracks faces only from ``read_from``, runs the model from
    ``score_from`` (a window start), keeps rows of frames [keep_from,
    keep_to) and stops decoding at ``read_to`` (None: the end)."""

    read_from: int = 0
    score_from: int = 0
    keep_from: int = 0
    keep_to: int | None = None
    read_to: int | None = None

    def __post_init__(self):
        if not 0 <= self.read_from <= self.score_from <= self.keep_from:
            raise ValueError(f"span reads from {self.read_from}, scores from {self.score_from} and keeps from "
                             f"{self.keep_from}: each must be at most the next")

    @property
    def whole(self) -> bool:
        return self == WHOLE


WHOLE = Span()


# Frames prepared ahead of the model: a window's worth keeps the reader busy
# while the model runs a hop of frames and a window.
READ_AHEAD = 16


@dataclass(frozen=True)
class Prepared:
    """A frame tracked and cropped, ready for the model: ``cropped`` (one
    face, or aligned) or ``tracked`` (every face), neither when the frame is
    not scored (before the span's first scored frame); ``prime``: the crop
    a segment's stream starts from (its first scored frame only)."""

    index: int
    frame: Frame | None = None  # kept only for every-face scoring, which crops each face when scoring
    cropped: CroppedFrame | None = None
    tracked: TrackedFaces | None = None
    prime: np.ndarray | None = None


@dataclass(frozen=True)
class ScoreOptions:
    windows: WindowPlan
    faces: str = DEFAULT_FACES
    aligned: bool = False  # the frames already are face crops: no detection
    min_face: int = DEFAULT_MIN_FACE
    face_detector: str = DEFAULT_FACE_DETECTOR
    quality: QualityOptions = QualityOptions()  # thresholds of the rows' quality flags
    live: bool = False  # a live source: rows as soon as final (windows/streams.py FrameStream)


class Model(Protocol):
    """What the loop needs of a detector (``AUDetector`` is one): the bundle,
    the decision threshold, and the graphs, opened when first asked for."""

    bundle: Bundle
    threshold: float

    def window_scorer(self, plan: WindowPlan, live: bool = False): ...


def make_tracker(options: ScoreOptions) -> FaceTracker | MultiFaceTracker | None:
    """The tracker of a run (None for aligned crops): the one place one is made."""
    if options.aligned:
        return None
    detector = make_face_detector(options.face_detector)
    if options.faces == "all":
        return MultiFaceTracker(detector, min_face=options.min_face)
    return FaceTracker(detector)


class Scoring:
    """One run: ``push`` frames in order, get the rows made final (as
    ``(face_id, StreamRow)``); ``finish`` at the end; ``table`` then holds
    every kept row.  ``run`` does all three over an iterable of frames."""

    def __init__(self, model: Model, options: ScoreOptions, span: Span = WHOLE, clock: StageClock | None = None):
        if options.faces == "all" and not span.whole:
            raise InputError(f"{param('faces')} all scores whole videos: a segment's tracks would need their ids "
                             f"joined to the previous segment's; drop {param('segment_frames')} (or use "
                             f"{param('faces')} largest)")
        self.options, self.span = options, span
        self.clock = clock or StageClock()
        open_scorer = lambda: model.window_scorer(options.windows, options.live)  # noqa: E731
        check_face_detector(options.face_detector)
        # One face: its window stream's graphs (most of a short run's start-up) open on a thread of their own
        # while the tracker's networks open and the first frames are read and detected.
        self._opening = Started(open_scorer) if options.faces != "all" else None
        self.tracker = make_tracker(options)
        self.cropper = Cropper()
        self.normalise = Normaliser(model.bundle.mean, model.bundle.std)
        self.streams = TrackStreams(open_scorer, self.cropper, self.normalise) if options.faces == "all" else None
        self.table = FrameTable(model.bundle.au_names, model.threshold, face_ids=options.faces == "all")
        self._carry: tuple[np.ndarray, object] | None = None  # the last face seen while warming up
        self._primed = span.score_from == 0

    @property
    def stream(self):
        """The one window stream (one face per frame), once its graphs are open."""
        return None if self._opening is None else self._opening.result()

    # -- the loop ----------------------------------------------------------

    def run(self, frames: Iterable[Frame], after_frame: Callable[[int], None] | None = None) -> FrameTable:
        """Score every frame; ``after_frame`` hears each frame's index once
        the model has taken it."""
        reader = StageClock()  # the reader thread's stages (they overlap the model's)
        try:
            for prepared in prefetched(self._prepare_all(frames, reader), READ_AHEAD):
                self._score(prepared)
                if after_frame is not None:
                    after_frame(prepared.index)
        finally:
            self.clock.add(reader)
        self.finish()
        return self.table

    def push(self, frame: Frame) -> list[FaceRow]:
        return self._score(self._prepare(frame, self.clock))

    def _prepare_all(self, frames: Iterable[Frame], clock: StageClock) -> Iterator[Prepared]:
        frames = iter(frames)
        try:
            for frame in clock.timed(itertools.islice(frames, self.span.read_to), "decode"):
                yield self._prepare(frame, clock)
        finally:
            if hasattr(frames, "close"):
                frames.close()

    def _prepare(self, frame: Frame, clock: StageClock) -> Prepared:
        """Track and crop one frame (in frame order: the tracker's state)."""
        if frame.index < self.span.read_from:
            return Prepared(frame.index)
        if frame.index < self.span.score_from:
            self._warm_up(frame, clock)
            return Prepared(frame.index)
        prime = self._prime_crop(clock)
        if self.streams is not None:
            with clock.stage("detect"):
                faces = self.tracker.update(frame.rgb, frame.timestamp)
            return Prepared(frame.index, frame, tracked=self.tracker.snapshot(faces))
        if self.tracker is None:
            return Prepared(frame.index, cropped=aligned_crop(frame, self.cropper, self.normalise, clock), prime=prime)
        with clock.stage("detect"):
            face = self.tracker.update(frame.rgb, frame.timestamp)
        return Prepared(frame.index, cropped=face_crop(frame, face, self.cropper, self.normalise, clock), prime=prime)

    def _score(self, prepared: Prepared) -> list[FaceRow]:
        """The model's part of one prepared frame: the rows it made final."""
        if prepared.tracked is not None:
            return self._keep(self.streams.push(prepared.frame, prepared.tracked, self.clock))
        if prepared.cropped is None:
            return []
        stream = self.stream  # waits for its graphs to open (not the model's time)
        with self.clock.stage("model"):
            if prepared.prime is not None:
                stream.prime(prepared.prime)
            return self._keep([(None, row) for row in stream.push(prepared.cropped)])

    def finish(self) -> list[FaceRow]:
        with self.clock.stage("model"):
            rows = self.streams.finish(self.clock) if self.streams is not None else \
                [(None, row) for row in self.stream.finish()]
        kept = self._keep(rows)
        self.table.sort()
        return kept

    @property
    def facts(self) -> RunFacts:
        """The run's model calls and other faces (the caller adds what it knows
        of the source: ``settle``)."""
        calls = self.streams.model_calls if self.streams is not None else self.stream.model_calls
        others = self.tracker.most_others if isinstance(self.tracker, FaceTracker) else 0
        return RunFacts(other_faces=others, model_calls=calls)

    def settle(self, complete: bool = True, frames_declared: int | None = None, shortfall: str = "") -> FrameTable:
        facts = self.facts
        return self.table.settle(RunFacts(complete, frames_declared, facts.other_faces, facts.model_calls,
                                          "" if complete else shortfall))

    # -- segments ----------------------------------------------------------

    def _warm_up(self, frame: Frame, clock: StageClock) -> None:
        """Track only, before the first scored frame; remember the last face."""
        with clock.stage("detect"):
            face = self.tracker.update(frame.rgb, frame.timestamp)
        if face.success:
            self._carry = (frame, face)

    def _prime_crop(self, clock: StageClock) -> np.ndarray | None:
        """At the first scored frame, the last face crop before it, which a
        run from frame 0 would hold there (None elsewhere, or without one)."""
        if self._primed:
            return None
        self._primed = True
        if self._carry is None:
            return None
        frame, face = self._carry
        self._carry = None
        return face_crop(frame, face, self.cropper, self.normalise, clock).crop

    def _keep(self, rows: list[FaceRow]) -> list[FaceRow]:
        span, kept = self.span, []
        for face_id, row in rows:
            index = row.frame.index
            if index >= span.keep_from and (span.keep_to is None or index < span.keep_to):
                with self.clock.stage("quality"):
                    quality = assess(row.frame.face, self.options.quality)
                self.table.add(row.frame, row.scores, face_id, quality)
                kept.append((face_id, row))
        return kept


def crops(source: str | Path | FrameSource, aligned: bool = False, face_detector: str = DEFAULT_FACE_DETECTOR,
          clock: StageClock | None = None) -> Iterator[CroppedFrame]:
    """The ImageNet-normalised face crops of a video, image folder or image,
    streamed (the largest face, then the one tracked): what exports and
    parity checks feed the official model."""
    tracker = make_tracker(ScoreOptions(WindowPlan.make("official", 1), aligned=aligned, face_detector=face_detector))
    frames = source if isinstance(source, FrameSource) else FrameSource(source)
    return crop_stream(frames, tracker, clock=clock or StageClock())


def clip_batches(source: str | Path | FrameSource, input_shape: tuple[int, ...], aligned: bool = False,
                 face_detector: str = DEFAULT_FACE_DETECTOR, clock: StageClock | None = None) -> Iterator[ClipBatch]:
    """The model batches [B, T, 3, 224, 224] of a video, image folder or
    image in official windows, streamed: decode -> track -> crop -> windows."""
    clock = clock or StageClock()
    cropped = crops(source, aligned, face_detector, clock)
    return clock.timed(ClipWindows.for_input_shape(input_shape).batches(cropped), "preprocess")
