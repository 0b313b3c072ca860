"""``mdhr-run --camera``: a live source scored frame by frame through the
one pipeline, until it ends, Ctrl-C, or ``max_frames``.  A camera or stream
is taken newest-only at an even stride the model keeps up with
(``sources/latest.py``).  A status callback gets one line per frame:
frames/s, per-frame latency (frame handed to the pipeline to row final),
the stride and the AUs active in the latest row."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from mdhr_runtime.results.table import FrameTable
from mdhr_runtime.sources.frames import Frame
from mdhr_runtime.sources.live import live_source

READ_TIMES = 256


@dataclass
class LiveResult:
    table: FrameTable
    interrupted: bool
    seconds: float


def run_live(detector, source: str, windows: str, hop: int | None,
             status: Callable[[str], None] = lambda line: None, max_frames: int | None = None,
             faces: str = "largest", min_face: int | None = None) -> LiveResult:
    """Score ``source`` live with ``detector`` (an ``AUDetector``); the rows
    it has when the source ends or the user stops it."""
    scoring = detector.scoring(windows, hop, faces, live=True, **({} if min_face is None else {"min_face": min_face}))
    read_at: dict[int, float] = {}  # frame index -> when it was read (the last READ_TIMES frames)
    latest_ms, start, interrupted, count = 0.0, time.perf_counter(), False, 0

    def latency(rows) -> None:
        nonlocal latest_ms
        now = time.perf_counter()
        for _, row in rows:
            latest_ms = 1e3 * (now - read_at.get(row.frame.index, now))

    paced = live_source(source)

    def frames() -> Iterator[Frame]:
        for frame in paced:
            read_at[frame.index] = time.perf_counter()
            read_at.pop(frame.index - READ_TIMES, None)  # rows are final well before (windows of T frames)
            yield frame

    latency_frames = scoring.options.windows.latency_frames
    try:
        for frame in frames():
            latency(scoring.push(frame))
            count += 1
            elapsed = time.perf_counter() - start
            status(status_line(count, elapsed, latest_ms, latency_frames, scoring.table,
                               getattr(paced, "stride", 1)))
            if max_frames is not None and count >= max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    scoring.finish()
    return LiveResult(scoring.settle(), interrupted, time.perf_counter() - start)


def status_line(frames: int, seconds: float, latency_ms: float, latency_frames: int, table: FrameTable,
                stride: int = 1) -> str:
    fps = frames / seconds if seconds > 0 else 0.0
    last = table.rows[-1] if table.rows else None
    if last is None:
        activity = "waiting for the first window"
    elif last.scores is None:
        activity = "no face"
    else:
        active = [au for au, s in zip(table.au_names, last.scores) if np.isfinite(s) and s >= table.threshold]
        activity = "active: " + (" ".join(active) if active else "none")
    taking = f"  every {stride} frames" if stride > 1 else ""
    return (f"{frames} frames  {fps:.1f} fps  latency {latency_ms:.0f} ms "
            f"(+{latency_frames} frames of context){taking}  {activity}")
