"""The cost of streaming (mdhr-bench --stream) and the smoothness of the
window modes (frame-to-frame change at window edges).

Streaming cost, on one bundle in one process, ONNX Runtime:

* ``frame_stage_ms``: one frame through the frame stage (p50);
* ``clip_stage_ms``: one window of cached features through the clip stage;
* ``per_frame_ms``: one new frame in stride-1 streaming (``FrameStream``
  with centred windows, hop 1: a frame stage and a clip stage per frame,
  bookkeeping included);
* ``clip_recompute_ms``: what a new frame costs without the split, the
  whole model on the window ending at it;
* ``stream_vs_recompute``: their ratio (the target is at most 0.1).
"""
from __future__ import annotations

import time

import numpy as np

from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.stages import StageRunner
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.windows.streams import FrameStream, WindowPlan


def p50_ms(seconds: list[float]) -> float:
    return round(float(np.median(seconds)) * 1e3, 3)


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure_stream(bundle: Bundle, threads: int, warmup: int, iters: int, seed: int = 0) -> dict:
    """The streaming costs (module doc).  A new frame in stride-1 streaming
    and a whole-clip recompute are timed alternately, so a change in the
    machine's load during the run touches both sides of their ratio; the
    first call after each switch is not timed (the other session's threads
    are still spinning then)."""
    rng = np.random.default_rng(seed)
    T = bundle.frames
    crops = rng.standard_normal((T + 2 * (warmup + iters), 3, 224, 224), dtype=np.float32)
    face = FaceResult(success=True, confidence=1.0, box=(0.0, 0.0, 224.0, 224.0))
    frames = [CroppedFrame(index=i, timestamp=i / 30, face=face, crop=c) for i, c in enumerate(crops)]
    clips = np.repeat(crops[None, :T], bundle.batch, axis=0)
    runner = StageRunner(bundle, threads=threads, providers=["CPUExecutionProvider"])
    single = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"], threads=threads)
    try:
        stream = FrameStream(runner, WindowPlan.make("centred", T, 1))  # stride-1 streaming
        for frame in frames[:T]:  # fill the cache: from here on every push runs a window
            stream.push(frame)
        per_frame, recompute = [], []
        rest = frames[T:]
        for untimed, frame in zip(rest[0::2], rest[1::2]):
            stream.push(untimed)
            per_frame.append(timed(lambda: stream.push(frame)))
            single.infer(clips)
            recompute.append(timed(lambda: single.infer(clips)) / bundle.batch)
        window = list(stream.cache)
        previous = runner.frame(crops[0], None)[1]
        frame_stage = [timed(lambda: runner.frame(c, previous)) for c in crops[:warmup + iters]]
        clip_stage = [timed(lambda: runner.clip(window)) for _ in range(warmup + iters)]
        name = runner.name
    finally:
        runner.close()
        single.close()
    result = {"mode": "stream", "backend": name, "precision": "fp32", "frames": T,
              "frame_stage_ms": p50_ms(frame_stage[warmup:]), "clip_stage_ms": p50_ms(clip_stage[warmup:]),
              "per_frame_ms": p50_ms(per_frame[warmup:]), "clip_recompute_ms": p50_ms(recompute[warmup:]),
              "cached_bytes_per_frame": bundle.card.get("stages", {}).get("cached_bytes_per_frame"),
              "latency_frames": {"stride_1": WindowPlan.make("centred", T, 1).latency_frames},
              "warmup": warmup, "iters": iters}
    result["stream_vs_recompute"] = round(result["per_frame_ms"] / result["clip_recompute_ms"], 4)
    return result


def edge_change(scores: np.ndarray, frames: int) -> dict:
    """Mean absolute frame-to-frame change of the AU scores ([n, AUs], NaN
    without a face) at positions that are multiples of ``frames`` (official
    window edges) against all other positions, and their ratio."""
    change = np.abs(np.diff(scores, axis=0)).mean(axis=1)  # change[t-1]: frame t-1 -> t
    positions = np.arange(1, len(scores))
    valid = np.isfinite(change)
    at_edge = valid & (positions % frames == 0)
    elsewhere = valid & (positions % frames != 0)
    if not at_edge.any() or not elsewhere.any():
        return {"at_multiples": None, "elsewhere": None, "ratio": None}
    edge, other = float(change[at_edge].mean()), float(change[elsewhere].mean())
    return {"at_multiples": round(edge, 6), "elsewhere": round(other, 6),
            "ratio": round(edge / other, 3) if other > 0 else None}

