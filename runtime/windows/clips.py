"""Fixed-shape model batches from a stream of face crops.

An exported MDHR bundle has a static input ``[B, T, 3, 224, 224]``.  The
official evaluation cuts a video into non-overlapping windows of T frames
and pads the last window by repeating its last frame; padded predictions
are ignored.  ``ClipWindows`` does the same over a stream, then packs B
windows per batch (the last batch padded with copies of its last window),
and marks which positions are real frames and which of those had a face.

Frames without a face still need pixels (the model differences consecutive
frames, so every position must hold something): they get the last face crop
seen before them, or, at the start of a video, the first face crop after
them within the window, or failing both the neutral all-zero crop (the
ImageNet mean image).  Repeating a crop reads as "no motion", which disturbs
neighbouring real frames least.  Their AU output is dropped (``has_face``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from mdhr.aus import IMAGE_SIZE
from mdhr.errors import MDHRError
from mdhr_runtime.crops.crop import CroppedFrame

CROP_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)


@dataclass(frozen=True)
class ClipBatch:
    """One model call's worth of input and the bookkeeping to map its output
    back to frames.

    ``clips`` float32 [B, T, 3, 224, 224]; ``frame_index`` int64 [B, T], the
    source frame at each position (-1 for padding); ``real`` bool [B, T],
    the position is a frame of the video, not padding; ``has_face`` bool
    [B, T], real and a face was found (keep its AU output).  ``frames`` are
    the real positions' ``CroppedFrame`` (without pixels) in order."""

    clips: np.ndarray
    frame_index: np.ndarray
    real: np.ndarray
    has_face: np.ndarray
    frames: tuple[CroppedFrame, ...]

    def rows(self, scores: np.ndarray) -> Iterator[tuple[CroppedFrame, np.ndarray | None]]:
        """Pair each real frame, in order, with its row of ``scores``
        ([B, T, ...] model output), or None where the frame had no face."""
        if scores.shape[:2] != self.real.shape:
            raise ValueError(f"scores shape {scores.shape} does not match batch {self.real.shape}")
        for frame, (b, t) in zip(self.frames, np.argwhere(self.real)):
            yield frame, (scores[b, t] if self.has_face[b, t] else None)


class ClipWindows:
    """Cut a stream of ``CroppedFrame`` into non-overlapping windows of
    ``clip_frames`` and batches of ``batch_size`` windows.

    Only one batch of crops is held at a time."""

    def __init__(self, clip_frames: int, batch_size: int = 1):
        if clip_frames < 1 or batch_size < 1:
            raise MDHRError(f"clip length and batch size must be at least 1, got {clip_frames} and {batch_size}")
        self.clip_frames = clip_frames
        self.batch_size = batch_size

    @classmethod
    def for_input_shape(cls, shape: Sequence[int]) -> "ClipWindows":
        """From a bundle's static input shape [B, T, 3, 224, 224]."""
        if len(shape) != 5 or tuple(shape[2:]) != CROP_SHAPE:
            raise MDHRError(f"model input shape {list(shape)} is not [B, T, 3, {IMAGE_SIZE}, {IMAGE_SIZE}]: "
                            f"re-export the bundle")
        return cls(clip_frames=int(shape[1]), batch_size=int(shape[0]))

    def batches(self, frames: Iterable[CroppedFrame], carry: np.ndarray | None = None) -> Iterator[ClipBatch]:
        """``carry``: the last face crop before the first frame, when the
        stream continues a video (a segment of it): faceless frames at the
        start then repeat it, as they would in a run from frame 0."""
        pending: list[list[CroppedFrame]] = []
        for window in self._windows(frames, carry):
            pending.append(window)
            if len(pending) == self.batch_size:
                yield self.pack(pending)
                pending = []
        if pending:
            yield self.pack(pending)

    def _windows(self, frames: Iterable[CroppedFrame],
                 last_face: np.ndarray | None) -> Iterator[list[CroppedFrame]]:
        """Windows of T frames with every crop filled in (see module doc)."""
        window: list[CroppedFrame] = []
        for frame in frames:
            window.append(frame)
            if len(window) == self.clip_frames:
                filled, last_face = fill_missing(window, last_face)
                yield filled
                window = []
        if window:
            filled, _ = fill_missing(window, last_face)
            yield filled

    def pack(self, windows: list[list[CroppedFrame]]) -> ClipBatch:
        shape = (self.batch_size, self.clip_frames)
        clips = np.empty(shape + CROP_SHAPE, dtype=np.float32)
        frame_index = np.full(shape, -1, dtype=np.int64)
        has_face = np.zeros(shape, dtype=bool)
        real = np.zeros(shape, dtype=bool)
        kept: list[CroppedFrame] = []
        for b in range(self.batch_size):
            # Padding windows repeat the last real window; padding positions
            # repeat the window's last frame (the official padding).
            window = windows[min(b, len(windows) - 1)]
            for t in range(self.clip_frames):
                frame = window[min(t, len(window) - 1)]
                clips[b, t] = frame.crop
                if b < len(windows) and t < len(window):
                    real[b, t] = True
                    frame_index[b, t] = frame.index
                    has_face[b, t] = frame.face.success
                    kept.append(dataclasses.replace(frame, crop=None))
        return ClipBatch(clips=clips, frame_index=frame_index, real=real, has_face=has_face,
                         frames=tuple(kept))


def fill_missing(window: list[CroppedFrame],
                  last_face: np.ndarray | None) -> tuple[list[CroppedFrame], np.ndarray | None]:
    """The window with a crop at every frame, and the last face crop in it
    (carried into the next window)."""
    first_face = next((f.crop for f in window if f.crop is not None), None)
    carry = last_face if last_face is not None else first_face
    if carry is None:
        carry = np.zeros(CROP_SHAPE, dtype=np.float32)  # normalised mean image
    filled = []
    for frame in window:
        if frame.crop is None:
            frame = dataclasses.replace(frame, crop=carry)
        else:
            carry = last_face = frame.crop
        filled.append(frame)
    return filled, last_face
