"""Which window scores each frame, and the streaming scorer built on the
frame and clip stages (``stages.py``).

Two window modes, over clips of T frames:

* ``official``: non-overlapping windows [0, T), [T, 2T), ...; the last one
  is padded by repeating its last frame.  The paper's evaluation.
* ``centred``: windows start every ``hop`` frames, and each frame is
  scored by the window whose centre is nearest to it (ties: the earlier
  window), so it sees context on both sides.  Frames before the first
  centre take the first window; frames after the last full window's reach
  take the last T frames of the video.  A video shorter than T is one
  window padded like the official one.

``official`` is ``centred`` with ``hop = T`` except for that end rule, so
one formula serves both.

``FrameStream`` scores a stream frame by frame: ``push`` a ``CroppedFrame``,
get back the rows that became final; ``finish`` at the end flushes the
rest.  Each frame runs the frame stage once; each window runs the clip
stage once.  Crops wait in a queue until a window needs their features
(or a call's worth, ``StageRunner.batch_frames``, has come), then run the
frame stage together: a hop of frames per call where the bundle has the
graph for it.  Rows come out when they did frame by frame, with the same
bits.  A stream that is not live, at hop 1, holds each row a few frames
more (``held_frames``): one, so a window is known not to be the stream's
last before it runs and can run the centre-only clip stage for its one
frame where the bundle has it (``StageRunner.clip_centre``: the same bits,
about 5/T of the clip stage's work); a hop's worth where the frame stage
takes several frames per call.  Memory is bounded: at most one window (T
frames, plus those held) of features, the previous frame's backbone taps,
at most T crops queued and T (plus those held) rows waiting.

Frames without a face are scored like the official path fills them: they
repeat the last face crop (no motion), or, before the first face, the
first face crop.  That needs no backbone run: their features are the last
face's static tokens and the constant "still" dynamics.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from mdhr.errors import InputError, MDHRError, param
from mdhr_runtime.backends.stages import FrameFeatures, StageRunner
from mdhr_runtime.choices import WINDOW_MODES
from mdhr_runtime.crops.crop import CroppedFrame


def default_hop(frames: int) -> int:
    """One frame, for every clip length: each frame then sits at the same
    position of its window (T/2, with T/2 frames before it and T/2 - 1
    after), so no score offset repeats with a period.  A longer hop puts
    neighbours at different positions and the scores take the hop's period
    (T = 4, hop 2: a zig-zag, neighbour changes 20 to 40 times those two
    frames apart; docs/windows.md).  The price is one clip stage run per
    frame."""
    return 1


@dataclass(frozen=True)
class WindowPlan:
    mode: str
    frames: int  # T
    hop: int

    @classmethod
    def make(cls, mode: str, frames: int, hop: int | None = None) -> "WindowPlan":
        if mode not in WINDOW_MODES:
            raise InputError(f"unknown window mode {mode!r} for {param('windows')}: choose {' or '.join(WINDOW_MODES)}")
        if mode == "official":
            if hop not in (None, frames):
                raise InputError(f"{param('hop')} applies to centred windows only (official windows hop by T = {frames})")
            return cls(mode, frames, frames)
        hop = default_hop(frames) if hop is None else hop
        if not 1 <= hop <= frames:
            raise InputError(f"{param('hop')} must be between 1 and the clip length {frames}, got {hop}")
        return cls(mode, frames, hop)

    def reach(self, first: int, stop: int | None) -> tuple[int, int | None]:
        """Where a run must start scoring and stop reading so that frames
        [first, stop) get exactly the windows a run from frame 0 gives them:
        the start of ``first``'s window (a multiple of the hop, so the window
        grid lines up) and the end of the window of ``stop - 1``."""
        if stop is None:
            return self.window_of(first), None
        return self.window_of(first), self.window_of(stop - 1) + self.frames

    def window_of(self, position: int) -> int:
        """Start of the regular window that scores frame ``position``: the one
        whose centre start + (T-1)/2 is nearest, ties to the earlier."""
        k = -(-(2 * position - (self.frames - 1) - self.hop) // (2 * self.hop))  # ceil, in integers
        return max(k, 0) * self.hop

    def final_window(self, position: int, length: int) -> int:
        """Start of the window that scores ``position`` once the stream has
        ended at ``length`` frames and its regular window ran past the end.
        Official: that window, padded; centred: the last T frames (or, for
        a stream shorter than T, the whole stream, padded)."""
        if self.mode == "official":
            return self.window_of(position)
        return max(length - self.frames, 0)

    @property
    def latency_frames(self) -> int:
        """How many frames after its own a frame's row is final (once the
        stream is T frames in; before that, up to T-1)."""
        earliest_position = (self.frames - 1 - self.hop) // 2 + 1
        return self.frames - 1 - max(earliest_position, 0)

    def describe(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "hop": self.hop, "latency_frames": self.latency_frames}


def held_frames(runner: StageRunner) -> int:
    """How many frames more than its window needs a row waits in a stream
    that is not live, at hop 1 (where each push completes a window): one,
    so a window is known not to be the stream's last (which also scores
    the frames after its centre) and can run the centre-only clip stage;
    a call's worth (``batch_frames``) where the frame stage takes several
    frames per call, so they run together.  Live rows come as soon as final
    (``WindowPlan.latency_frames``)."""
    if runner.batch_frames > 1:
        return runner.batch_frames
    return 1 if runner.centre_position is not None else 0


@dataclass(frozen=True)
class StreamRow:
    frame: CroppedFrame  # without its crop
    scores: np.ndarray | None  # AU scores, None without a face


class FrameStream:
    """Push frames, get rows when final (see module doc)."""

    def __init__(self, runner: StageRunner, plan: WindowPlan, live: bool = True):
        if plan.frames != runner.frames:
            raise MDHRError(f"windows of {plan.frames} frames, but the clip stage takes {runner.frames}")
        self.runner, self.plan = runner, plan
        self.hold = 0 if live or plan.hop != 1 else held_frames(runner)
        self.cache: deque[FrameFeatures] = deque(maxlen=plan.frames + self.hold)  # the last T (+ hold) frames
        self.pending: deque[tuple[int, CroppedFrame]] = deque()  # frames waiting for their window
        self.count = 0  # frames pushed
        self.windows_run = 0
        self.frames_run = 0
        self._taps: list[np.ndarray] | None = None  # backbone taps of the last face crop
        self._queued: list[np.ndarray | None] = []  # crops (None: no face) not yet through the frame stage
        self._last_static: np.ndarray | None = None
        self._faceless_lead = 0  # face-less frames before the first face
        self._scored: tuple[int, dict[int, np.ndarray]] | None = None  # the last window run: start, scores by offset

    def prime(self, crop: np.ndarray | None) -> None:
        """The last face crop before the first frame pushed (a segment that
        continues a video): the stream then holds what a run from frame 0
        holds there (that crop's static tokens and backbone taps), so the
        next frames get the same features."""
        if crop is not None:
            features, self._taps = self.runner.frame(crop, None)
            self._last_static = features.static

    @property
    def model_calls(self) -> int:
        return self.frames_run + self.windows_run

    def push(self, frame: CroppedFrame) -> list[StreamRow]:
        self._add_features(frame)
        self.pending.append((self.count, dataclasses.replace(frame, crop=None)))
        self.count += 1
        return self._final_rows(ended=False)

    def finish(self) -> list[StreamRow]:
        """The remaining rows, now that the stream has ended."""
        return self._final_rows(ended=True)

    @property
    def cached_bytes(self) -> int:
        """The feature cache and the last face's taps."""
        return sum(f.nbytes for f in self.cache) + sum(t.nbytes for t in self._taps or [])

    @property
    def queued_bytes(self) -> int:
        """Crops waiting for the frame stage."""
        return sum(crop.nbytes for crop in self._queued if crop is not None)

    # -- features ------------------------------------------------------------

    def _add_features(self, frame: CroppedFrame) -> None:
        self._queued.append(frame.crop)
        faces = sum(crop is not None for crop in self._queued)
        if faces >= self.runner.batch_frames or len(self._queued) >= self.plan.frames:
            self._run_queued()

    def _run_queued(self) -> None:
        """Every queued frame's features into the cache, in order: each run
        of consecutive face crops through the frame stage together."""
        queued, self._queued = self._queued, []
        start = 0
        while start < len(queued):
            if queued[start] is None:
                self._add_faceless()
                start += 1
                continue
            stop = next((i for i in range(start, len(queued)) if queued[i] is None), len(queued))
            features, self._taps = self.runner.run_frames(queued[start:stop], self._taps)
            for one in features:
                self._add_face(one)
            start = stop

    def _add_faceless(self) -> None:
        if self._last_static is None:
            self._faceless_lead += 1  # filled in when the first face comes
            return
        self.cache.append(FrameFeatures(self._last_static, self.runner.still_dynamics()))

    def _add_face(self, features: FrameFeatures) -> None:
        self.frames_run += 1
        if self._last_static is None:
            lead = min(self._faceless_lead, self.plan.frames - 1)
            self.cache.extend([FrameFeatures(features.static, self.runner.still_dynamics())] * lead)
        self._last_static = features.static
        self.cache.append(features)

    # -- rows ----------------------------------------------------------------

    def _final_rows(self, ended: bool) -> list[StreamRow]:
        rows = []
        while self.pending:
            position, frame = self.pending[0]
            if not frame.face.success:
                rows.append(StreamRow(frame, None))
            else:
                start = self.plan.window_of(position)
                if start + self.plan.frames + self.hold > self.count:
                    if not ended:
                        break
                    if start + self.plan.frames > self.count:
                        start = self.plan.final_window(position, self.count)
                rows.append(StreamRow(frame, self._window_scores(start, position - start)))
            self.pending.popleft()
        return rows

    def _window_scores(self, start: int, offset: int) -> np.ndarray:
        """AU scores of the frame at ``offset`` in the window at ``start``.  A
        window runs once, for all its frames; held (``hold``: hop 1), a
        window asked for its centre frame that is not the stream's last
        scores that frame alone (no later row asks it for another) through
        the centre-only clip stage: the same bits, about 5/T of the work."""
        if self._scored is None or self._scored[0] != start or offset not in self._scored[1]:
            window = self._window(start)
            if self.hold and offset == self.runner.centre_position and start + self.plan.frames < self.count:
                self._scored = (start, {offset: self.runner.clip_centre(window)})
            else:
                self._scored = (start, dict(enumerate(self.runner.clip(window))))
            self.windows_run += 1
        return self._scored[1][offset]

    def _window(self, start: int) -> list[FrameFeatures]:
        if start + self.plan.frames > self.count - len(self._queued):  # it needs frames still queued
            self._run_queued()
        first = self.count - len(self._queued) - len(self.cache)
        assert start >= first, "a window reached past the cache"
        window = list(self.cache)[start - first:start - first + self.plan.frames]
        # A window running past the end repeats its last frame (official padding).
        padding = FrameFeatures(window[-1].static, self.runner.still_dynamics())
        return window + [padding] * (self.plan.frames - len(window))
