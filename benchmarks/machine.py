"""What machine a measurement was taken on, and how much memory it used."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import resource
import sys
from functools import lru_cache

from mdhr_runtime.backends.gpu import memory_used_mb, visible_gpu

# Packages whose versions change the numbers.
_VERSIONED = ("mdhr-toolkit", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "openvino", "nncf",
              "opencv-python-headless")


def usable_cores() -> int:
    """CPU cores this process may run on (affinity and containers included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    first = text.split("\n\n")[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _VERSIONED:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def gpu_names() -> list[str]:
    """Names of the visible CUDA GPUs, asked of PyTorch where it is
    installed, else of the CUDA runtime library (none on CPU-only machines)."""
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return []
    try:

        return [visible_gpu().name]
    except Exception:  # no GPU, no Polygraphy or libcudart: only the GPU's name is lost
        pass
    return []


def describe(threads: int) -> dict:
    """The ``machine`` section of the reports."""
    import onnxruntime as ort

    flags = cpu_flags()
    return {
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "threads": threads,
        "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile"}),
        # Timings on a busy machine are slower and noisier; this says how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": gpu_names(),
        "onnxruntime_providers": ort.get_available_providers(),
        "os": platform.platform(),
        "versions": versions(),
    }


def rss_mb() -> float | None:
    """Resident memory of this process now (Linux)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def peak_rss_mb() -> float:
    """Highest resident memory this process has had."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def device_memory_used_mb() -> float | None:
    """Memory in use on GPU 0, all processes together (None without a GPU,
    or without PyTorch or the CUDA runtime library to ask).  Only call it for GPU backends: the query itself
    creates a CUDA context."""
    if "torch" in sys.modules:
        import torch

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20

    return memory_used_mb()
