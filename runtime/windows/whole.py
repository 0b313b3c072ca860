"""Official windows scored by the whole-model graph, pushed frame by frame
like ``FrameStream`` (``streams.py``), so the pipeline drives either alike.

Frames gather into non-overlapping windows of T; B windows make one model
call (the bundle's static batch; the last call padded as ``ClipWindows``
pads).  Faceless frames are filled as ``clips.py`` says; a call whose
windows hold no face at all is not run: its rows have no scores anyway.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.windows.clips import ClipWindows, fill_missing
from mdhr_runtime.windows.streams import StreamRow


class WholeModelStream:
    """Push ``CroppedFrame``s, get ``StreamRow``s when their batch has run."""

    def __init__(self, runner, windows: ClipWindows):
        self.runner, self.windows = runner, windows
        self._window: list[CroppedFrame] = []
        self._pending: list[list[CroppedFrame]] = []
        self._last_face: np.ndarray | None = None
        self.windows_run = 0  # model calls made
        self.frames_run = 0  # (no per-frame stage here)

    @property
    def model_calls(self) -> int:
        return self.windows_run

    def prime(self, crop: np.ndarray | None) -> None:
        """The last face crop before the first frame pushed (a segment that
        continues a video): faceless frames at its start repeat it."""
        self._last_face = crop

    def push(self, frame: CroppedFrame) -> list[StreamRow]:
        self._window.append(frame)
        if len(self._window) < self.windows.clip_frames:
            return []
        self._close_window()
        return self._run() if len(self._pending) == self.windows.batch_size else []

    def finish(self) -> list[StreamRow]:
        if self._window:
            self._close_window()
        return self._run() if self._pending else []

    def _close_window(self) -> None:
        filled, self._last_face = fill_missing(self._window, self._last_face)
        self._pending.append(filled)
        self._window = []

    def _run(self) -> list[StreamRow]:
        batch = self.windows.pack(self._pending)
        self._pending = []
        if batch.has_face.any():
            scores = self.runner.infer(batch.clips)["au_scores"]
            self.windows_run += 1
        else:  # no face anywhere in these windows: no row keeps a score
            scores = np.zeros(batch.real.shape + (1,), dtype=np.float32)
        return [StreamRow(dataclasses.replace(frame, crop=None), row) for frame, row in batch.rows(scores)]
