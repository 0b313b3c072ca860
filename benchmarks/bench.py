"""mdhr-bench: latency, throughput, load time and memory of every backend
on the same inputs.

Each backend is measured in a fresh process of its own.  That keeps the
numbers apart: peak memory is that backend's alone, and no backend runs
while another's thread pool is still spinning (PyTorch's OpenMP threads
keep spinning after a call and would slow ONNX Runtime in the same process).
"""
from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mdhr.errors import BackendUnavailable, InputError, MDHRError, param
from mdhr_bench.backends import (
    BACKENDS,
    ONNXRUNTIME_FP32,
    TORCH_FP32,
    Backend,
    device_of,
    for_bundle,
    open_backend,
    unavailable_reason,
)
from mdhr_bench.machine import describe, device_memory_used_mb, peak_rss_mb, rss_mb, usable_cores
from mdhr_bench.stream import measure_stream
from mdhr_bench.video import profile_video, truncation_warning
from mdhr_runtime.backends.gates import recorded
from mdhr_runtime.backends.stages import has_stages
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.held import signals_held

RESULT_KEYS = ("mode", "backend", "precision", "device", "batch", "frames", "status", "reason", "load_s",
               "first_inference_ms", "latency_ms", "clips_per_s", "frames_per_s", "speedup_vs_torch",
               "speedup_vs_onnxruntime", "export_gate", "memory", "warmup", "iters")


@dataclass
class BenchOptions:
    model: Path
    ckpt: Path | None = None
    backends: list[Backend] = field(default_factory=lambda: list(BACKENDS.values()))
    batch: int | None = None  # default: the bundle's
    warmup: int = 3
    iters: int = 20
    threads: int | None = None  # default: every usable core
    video: Path | None = None
    stream: bool = False


def validate(options: BenchOptions) -> None:
    if options.iters < 1:
        raise InputError(f"{param('iters')} must be 1 or more, got {options.iters}")
    if options.warmup < 0:
        raise InputError(f"{param('warmup')} must be 0 or more, got {options.warmup}")
    if options.batch is not None and options.batch < 1:
        raise InputError(f"{param('batch')} must be 1 or more, got {options.batch}")
    if options.threads is not None and options.threads < 1:
        raise InputError(f"{param('threads')} must be 1 or more, got {options.threads}")
    if options.ckpt is not None and not Path(options.ckpt).is_file():
        raise InputError(f"{options.ckpt}: no such checkpoint file; check {param('ckpt')}")
    if options.video is not None and not Path(options.video).is_file():
        raise InputError(f"{options.video}: no such video file; check {param('video')}")


def bench_clips(batch: int, frames: int, seed: int = 0) -> np.ndarray:
    """One input batch shared by every backend (normalised-image scale)."""
    return np.random.default_rng(seed).standard_normal((batch, frames, 3, 224, 224), dtype=np.float32)


def run_benchmark(options: BenchOptions, say: Callable[[str], None] = lambda line: None) -> dict:
    validate(options)
    bundle = load_bundle(options.model)
    threads = options.threads or usable_cores()
    batch = options.batch or bundle.batch
    clips = bench_clips(batch, bundle.frames)
    machine = describe(threads)  # before the runs, so its load average is other processes' load
    results = []
    for backend in (for_bundle(b, bundle) for b in options.backends):
        reason = _static_reason(backend, bundle, options.ckpt, batch)
        if reason:
            say(f"{backend.name}: skipped ({reason})")
            results.append(skipped(backend, batch, bundle.frames, reason))
            continue
        say(f"{backend.name}: loading, {options.warmup} warm-up and {options.iters} timed runs ...")
        row = measure_in_own_process(backend, bundle.root, options.ckpt, clips, options.warmup,
                                     options.iters, threads)
        say(f"{backend.name}: " + (f"{row['latency_ms']['p50']:.1f} ms per batch (p50)" if row["status"] == "ok"
                                   else f"skipped ({row['reason']})"))
        results.append(row)
    add_speedups(results)
    add_export_gates(results, bundle)
    report = {"tool": "mdhr-bench", "bundle": bundle_summary(bundle),
              "checkpoint": checkpoint_summary(options.ckpt, bundle), "machine": machine,
              "settings": {"batch": batch, "frames": bundle.frames, "warmup": options.warmup,
                           "iters": options.iters, "threads": threads,
                           "timing": "numpy in, numpy out: host-device copies included, GPU work "
                                     "synchronised before the clock stops"},
              "results": results, "int8_search": int8_frontier(bundle), "video": None, "video_centred": None}
    if options.video is not None:

        say(f"video pipeline on {options.video}, official windows ...")
        report["video"] = profile_video(options.video, bundle, threads, "official")
        if not report["video"]["complete"]:

            say(truncation_warning(options.video, report["video"]["frames"], report["video"]["frames_declared"]))
        if has_stages(bundle):
            say(f"video pipeline on {options.video}, centred windows ...")
            report["video_centred"] = profile_video(options.video, bundle, threads, "centred")
            report["video_centred"]["cost_vs_official"] = round(
                report["video"]["fps"] / report["video_centred"]["fps"], 3)
    if options.stream:
        if not has_stages(bundle):
            raise MDHRError(f"{bundle.root}: no frame and clip stage graphs to stream with; export it again")

        say(f"stream: frame stage, clip stage, stride-1 streaming and whole-clip recompute "
            f"({options.warmup} warm-up, {options.iters} timed) ...")
        row = measure_stream(bundle, threads, options.warmup, options.iters)
        say(f"stream: {row['per_frame_ms']:.1f} ms per new frame against {row['clip_recompute_ms']:.1f} ms "
            f"recomputing the clip ({row['stream_vs_recompute']:.3f}x)")
        results.append(row)
    return report


def bundle_summary(bundle: Bundle) -> dict:
    return {"path": str(bundle.root), "dataset": bundle.dataset, "backbone": bundle.backbone,
            "input_shape": list(bundle.input_shape), "untrained": bundle.untrained,
            "artifacts": {kind: artifact.name for kind, artifact in bundle.card.artifacts.items()}}


def checkpoint_summary(ckpt: Path | None, bundle: Bundle) -> dict | None:
    """Whether the checkpoint is the one the bundle was exported from: if
    not, PyTorch and the bundle run different weights."""
    if ckpt is None:
        return None
    from mdhr_export.pipeline import sha256

    digest = sha256(Path(ckpt))
    exported_from = bundle.card.source.checkpoint_sha256
    return {"path": str(ckpt), "sha256": digest,
            "matches_bundle": None if exported_from is None else digest == exported_from}


def _static_reason(backend: Backend, bundle: Bundle, ckpt: Path | None, batch: int) -> str | None:
    if backend.family != "torch" and batch != bundle.batch:
        return (f"the bundle's model takes batches of {bundle.batch} (static shape); "
                f"a bundle from mdhr-export ... --batch {batch} times batch {batch}")
    return unavailable_reason(backend, bundle, ckpt)


def skipped(backend: Backend, batch: int, frames: int, reason: str) -> dict:
    row = dict.fromkeys(RESULT_KEYS)
    row.update(mode="clip", backend=backend.name, precision=backend.precision, batch=batch, frames=frames,
               status="skipped", reason=reason)
    return row


def measure_in_own_process(backend: Backend, bundle_dir: Path, ckpt: Path | None, clips: np.ndarray,
                           warmup: int, iters: int, threads: int) -> dict:
    """``measure_backend`` in a child process.  spawn, not fork: a forked
    child would inherit this process's memory (and any thread pools),
    spoiling both the memory and the timing.  The parent waits in short,
    interruptible polls; when it is interrupted or terminated it kills the
    child (which writes nothing) at once, rather than waiting out a timing
    run that ignores signals while the backend computes."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_measure_child, args=(send, backend.name, bundle_dir, ckpt, clips, warmup,
                                                         iters, threads), daemon=True)
    try:
        with signals_held():  # a child cut off while it is sent its work would fail with a traceback of its own
            child.start()
        send.close()
        while not receive.poll(0.1):
            if not child.is_alive():
                return skipped(backend, clips.shape[0], clips.shape[1],
                               f"the measuring process died (exit {child.exitcode}; out of memory?)")
        outcome, value = receive.recv()
    except EOFError:
        return skipped(backend, clips.shape[0], clips.shape[1], "the measuring process died (out of memory?)")
    finally:
        if child.is_alive():
            child.kill()
        if child.pid is not None:  # started
            child.join()
        receive.close()
    if outcome == "error":
        raise value
    return value


def _measure_child(send, *args) -> None:
    """The child's side: Ctrl-C goes to the whole process group, and the
    parent decides (it kills this process); the result or the exception
    goes back through the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # held while it was started
    try:
        result = ("ok", measure_backend(*args))
    except Exception as error:  # an MDHRError or a bug: the parent raises it
        result = ("error", error)
    send.send(result)
    send.close()


def measure_backend(name: str, bundle_dir: Path, ckpt: Path | None, clips: np.ndarray, warmup: int,
                    iters: int, threads: int) -> dict:
    """Load one backend and time it (runs in the child process)."""
    bundle = load_bundle(bundle_dir)
    backend = for_bundle(BACKENDS[name], bundle)
    batch, frames = clips.shape[:2]
    _import_library(backend)  # so the memory baseline holds the library, and the load time does not
    on_gpu = _expects_gpu(backend)
    memory = {"rss_before_load_mb": rss_mb(), "peak_rss_mb": None, "gpu_mb": None}
    gpu_before = device_memory_used_mb() if on_gpu else None
    start = time.perf_counter()
    try:
        runner = open_backend(backend, bundle, ckpt, threads)
    except BackendUnavailable as e:
        return skipped(backend, batch, frames, str(e))
    load_s = time.perf_counter() - start
    try:
        first = _seconds(runner, clips)  # the cold call: first-run allocations and kernel choices
        for _ in range(warmup - 1):
            runner.infer(clips)
        seconds = [] if warmup else [first]  # --warmup 0 times the cold call too
        seconds += [_seconds(runner, clips) for _ in range(iters - len(seconds))]
        device = device_of(runner)
        if on_gpu and gpu_before is not None:
            memory["gpu_mb"] = round(device_memory_used_mb() - gpu_before, 1)
    finally:
        runner.close()
    memory["peak_rss_mb"] = peak_rss_mb()
    memory = {k: None if v is None else round(v, 1) for k, v in memory.items()}
    clips_per_s = batch * len(seconds) / sum(seconds)
    row = dict.fromkeys(RESULT_KEYS)
    row.update(mode="clip", backend=name, precision=backend.precision, device=device, batch=batch, frames=frames,
               status="ok", load_s=round(load_s, 3), first_inference_ms=round(first * 1e3, 2),
               latency_ms=latency_summary(seconds), clips_per_s=round(clips_per_s, 4),
               frames_per_s=round(clips_per_s * frames, 3), memory=memory, warmup=warmup, iters=iters)
    return row


def _seconds(runner, clips: np.ndarray) -> float:
    start = time.perf_counter()
    runner.infer(clips)  # every runner returns host arrays, so the work is finished here
    return time.perf_counter() - start


def _import_library(backend: Backend) -> None:
    if backend.family == "torch":
        import torch  # noqa: F401

        import mdhr_bench.torch_runner  # noqa: F401
    elif backend.family == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif backend.family == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:  # reported as the skip reason
            pass


def _expects_gpu(backend: Backend) -> bool:
    if backend.family == "torch":
        import torch

        return torch.cuda.is_available()
    if backend.family == "openvino":
        return False
    return backend.family == "tensorrt" or backend.provider != "CPUExecutionProvider"


def latency_summary(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(ms.mean()), 3), "std": round(float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, 3)}


def add_export_gates(results: list[dict], bundle: Bundle) -> None:
    """The agreement with fp32 that the export measured for each runner on
    real face clips (mdhr-export --calibrate), beside its speed."""

    for row in results:
        gate = recorded(bundle, row["backend"])
        if gate is not None and gate.get("status") == "measured":
            row["export_gate"] = {k: gate[k] for k in ("passed", "median_decision_agreement", "rank_correlation_min",
                                                       "region_argmax_agreement", "au_max_abs_error", "frames")}


def int8_frontier(bundle: Bundle) -> dict | None:
    """What the export's INT8 search tried (speed and agreement of each
    candidate, ``chosen`` the one shipped), from the card; None without one."""
    search = bundle.card.report("int8", "search")
    if search is None:
        return None
    keys = ("int8_groups", "fp32_groups", "int8_macs_share", "speedup_vs_onnxruntime", "median_decision_agreement",
            "rank_correlation_min", "region_argmax_agreement", "au_max_abs_error", "passed")
    return {"gate": search["gate"], "passed": search["passed"], "chosen": search["chosen"],
            "load_average": search["load_average"], "candidates": [{k: c[k] for k in keys} for c in search["frontier"]]}


def add_speedups(results: list[dict]) -> None:
    """Throughput relative to PyTorch eager float32 and to ONNX Runtime
    float32 on the CPU (None when the baseline did not run)."""
    for key, baseline in (("speedup_vs_torch", TORCH_FP32.name), ("speedup_vs_onnxruntime", ONNXRUNTIME_FP32.name)):
        base = next((r for r in results if r["backend"] == baseline and r["status"] == "ok"
                     and r.get("mode") != "stream"), None)
        for row in results:
            if base is not None and row["status"] == "ok" and row.get("mode") != "stream":
                row[key] = round(row["clips_per_s"] / base["clips_per_s"], 3)
