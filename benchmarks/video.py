"""The runtime's whole video pipeline, for timing (mdhr-bench --video) and
as a source of real face clips (mdhr-parity --video).  It drives the
runtime's own pieces through ``AUDetector`` and ``clip_batches``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mdhr_bench.stream import edge_change
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.pipeline import clip_batches
from mdhr_runtime.sources.frames import FrameSource


def video_clip_batches(path: Path, bundle: Bundle, max_clips: int | None = None,
                       on_truncated: Callable[[str], None] = lambda line: None
                       ) -> Iterator[tuple[np.ndarray, int]]:
    """(clips [B, T, 3, 224, 224], number of real clips) of a video's faces,
    for parity.  Windows in which no frame has a face are left out: their
    pixels are filler, not a face.  A video that ends before the frames it
    declares is used as far as it decodes, and ``on_truncated`` hears of it."""
    frames = FrameSource(path)
    taken = 0
    for batch in clip_batches(frames, bundle.input_shape):
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
    if frames.truncated:
        on_truncated(truncation_warning(path, frames.frames_read, frames.frame_count))


def truncation_warning(path: Path, read: int, declared: int) -> str:
    return (f"warning: read {read} of {declared} frames of {path}: the file is truncated or damaged; "
            "the frames read were used")


def profile_video(path: Path, bundle: Bundle, threads: int | None = None, windows: str = "official",
                  hop: int | None = None) -> dict:
    """Frames per second of the whole pipeline in one window mode, the time
    of each stage, and the frame-to-frame change of the scores at the
    official window edges against elsewhere."""

    setup_start = time.perf_counter()
    with AUDetector(bundle.root, "auto", threads=threads) as detector:
        setup_s = time.perf_counter() - setup_start
        report, table = detector.profile(path, windows=windows, hop=hop)
    return {"video": str(path), "setup_s": round(setup_s, 3), **report,
            "edge_change": edge_change(table.score_matrix(), bundle.frames)}
