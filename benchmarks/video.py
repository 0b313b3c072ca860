"""The runtime's video pipeline, driven stage by stage so each stage can be
timed: FrameSource (decode) -> FaceTracker (detect) -> Cropper and
to_model_input (preprocess) -> ClipWindows (preprocess) -> runner (model).

The same stream of clip batches gives mdhr-parity its real face clips.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from mdhr_runtime.bundle import Bundle
from mdhr_runtime.clips import ClipBatch, ClipWindows
from mdhr_runtime.crop import CroppedFrame, Cropper, to_model_input
from mdhr_runtime.faces import FaceTracker
from mdhr_runtime.frames import FrameSource
from mdhr_runtime.runners import open_runner

STAGES = ("decode", "detect", "preprocess", "model")


class StageClock:
    """Seconds spent in each named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def total(self) -> float:
        return sum(self.seconds.values())


def cropped_frames(path: Path, clock: StageClock, tracker: FaceTracker | None = None,
                   cropper: Cropper | None = None) -> Iterator[CroppedFrame]:
    """``mdhr_runtime.crop.crop_stream`` unrolled, with decode, detection and
    cropping timed apart."""
    tracker = tracker or FaceTracker()
    cropper = cropper or Cropper()
    frames = iter(FrameSource(path))
    while True:
        with clock.stage("decode"):
            frame = next(frames, None)
        if frame is None:
            return
        with clock.stage("detect"):
            face = tracker.update(frame.rgb, frame.timestamp)
        with clock.stage("preprocess"):
            crop = to_model_input(cropper.crop(frame.rgb, face)) if face.success else None
        yield CroppedFrame(index=frame.index, timestamp=frame.timestamp, face=face, crop=crop)


def clip_batches(path: Path, bundle: Bundle, clock: StageClock | None = None,
                 tracker: FaceTracker | None = None) -> Iterator[ClipBatch]:
    """The model batches of a video, as the runtime makes them.  Packing
    windows into batches is counted as preprocessing."""
    clock = clock or StageClock()
    batches = ClipWindows.for_input_shape(bundle.input_shape).batches(cropped_frames(path, clock, tracker))
    while True:
        start, upstream = time.perf_counter(), clock.total()
        batch = next(batches, None)
        # time inside next() not already booked by the upstream stages
        clock.seconds["preprocess"] += time.perf_counter() - start - (clock.total() - upstream)
        if batch is None:
            return
        yield batch


def video_clip_batches(path: Path, bundle: Bundle, max_clips: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """(clips [B, T, 3, 224, 224], number of real clips) of a video's faces,
    for parity.  Windows in which no frame has a face are left out: their
    pixels are filler, not a face."""
    taken = 0
    for batch in clip_batches(path, bundle):
        with_face = batch.has_face.any(axis=1)
        if not with_face.any():
            continue
        keep = np.flatnonzero(with_face)
        if max_clips is not None:
            keep = keep[:max_clips - taken]
        taken += len(keep)
        clips = batch.clips[keep]
        padding = np.repeat(clips[-1:], bundle.batch - len(keep), axis=0)
        yield np.concatenate([clips, padding]), len(keep)
        if max_clips is not None and taken >= max_clips:
            return


def profile_video(path: Path, bundle: Bundle, threads: int | None = None) -> dict:
    """Frames per second of the whole pipeline, and the time of each stage."""
    setup_start = time.perf_counter()
    runner, why = open_runner(bundle, "auto", threads=threads)
    tracker = FaceTracker()
    setup_s = time.perf_counter() - setup_start
    clock = StageClock()
    frames = faces = 0
    start = time.perf_counter()
    try:
        for batch in clip_batches(path, bundle, clock, tracker):
            with clock.stage("model"):
                runner.infer(batch.clips)
            frames += int(batch.real.sum())
            faces += int(batch.has_face.sum())
    finally:
        runner.close()
    wall = time.perf_counter() - start
    stages = {name: {"seconds": round(clock.seconds[name], 4),
                     "ms_per_frame": round(1e3 * clock.seconds[name] / max(frames, 1), 3),
                     "share": round(clock.seconds[name] / wall, 4) if wall else None} for name in STAGES}
    return {"video": str(path), "backend": runner.name, "why": why, "setup_s": round(setup_s, 3),
            "frames": frames, "frames_with_face": faces, "seconds": round(wall, 4),
            "fps": round(frames / wall, 3) if wall else None, "stages": stages,
            "other_seconds": round(max(wall - clock.total(), 0.0), 4)}

