"""Is there a CUDA GPU, which one, and why not: asked of the CUDA runtime
library (libcudart) that Polygraphy's TensorRT runner itself loads, through
ctypes.  No TensorRT object is made here: creating a TensorRT Builder or
Runtime on a machine without a GPU kills the process instead of raising, so
every TensorRT path asks this module first.
"""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mdhr.errors import BackendUnavailable, MDHRError

# cudaDeviceAttr values (stable since CUDA 5): compute capability major/minor.
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76
# cudaDeviceProp begins with ``char name[256]``; the rest of the struct (about
# 1 KB, growing between releases) lands in the generous buffer unread.
_PROPS_BYTES, _NAME_BYTES = 16384, 256
DRIVER_LIBRARY = "libcuda.so.1"


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "9.0"
    driver: str  # CUDA version the driver supports, "13.0"
    runtime: str  # CUDA runtime library version, "13.0"


def cuda_wheel_library_dirs() -> list[str]:
    """Where the CUDA 13 runtime wheel (nvidia-cuda-runtime) puts libcudart:
    ``site-packages/nvidia/cu13/lib``.  Polygraphy 0.53.6 looks only in the
    CUDA 12 wheels' ``nvidia/cuda_runtime/lib`` (and LD_LIBRARY_PATH,
    /usr/local/cuda), so a pip-only machine would have no libcudart for it."""
    found = (Path(entry) / "nvidia" / "cu13" / "lib" for entry in sys.path if entry)
    return list(dict.fromkeys(str(d) for d in found if any(d.glob("libcudart.so*"))))


def cuda_runtime_library() -> ctypes.CDLL:
    """The libcudart Polygraphy loads (LD_LIBRARY_PATH, /usr/local/cuda, the
    CUDA runtime wheels)."""
    try:
        from polygraphy import cuda
    except ImportError:
        raise BackendUnavailable("Polygraphy is not installed (pip install 'mdhr-toolkit[gpu]')") from None
    # Polygraphy reads LD_LIBRARY_PATH when it first looks for libcudart and
    # loads what it finds by full path: listing the wheel's folder there is enough.
    searched = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    extra = [d for d in cuda_wheel_library_dirs() if d not in searched]
    if extra:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([*filter(None, searched), *extra])
    try:
        return cuda.wrapper().handle
    except Exception:  # Polygraphy raises its own exception type when libcudart is missing
        raise BackendUnavailable("the CUDA runtime library (libcudart) was not found: pip install 'mdhr-toolkit[gpu]' "
                                 "(it brings nvidia-cuda-runtime) or put CUDA's lib64 on LD_LIBRARY_PATH") from None


def error_name(library: ctypes.CDLL, code: int) -> str:
    """``cudaErrorInsufficientDriver: CUDA driver version is insufficient ...``"""
    library.cudaGetErrorName.restype = ctypes.c_char_p
    library.cudaGetErrorString.restype = ctypes.c_char_p
    name = library.cudaGetErrorName(ctypes.c_int(code))
    text = library.cudaGetErrorString(ctypes.c_int(code))
    return f"{(name or b'cudaError ' + str(code).encode()).decode()}: {(text or b'').decode()}"


def _version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def driver_present() -> bool:
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return False
    return True


def visible_gpu(library: ctypes.CDLL | None = None) -> Gpu:
    """The first CUDA GPU, or MDHRError saying why there is none, naming the
    CUDA error (for example cudaErrorInsufficientDriver for a driver older
    than the runtime library)."""
    library = library or cuda_runtime_library()
    count = ctypes.c_int(0)
    status = library.cudaGetDeviceCount(ctypes.byref(count))
    if status != 0 and not driver_present():
        raise BackendUnavailable(f"no NVIDIA driver is installed ({DRIVER_LIBRARY} not found; CUDA says "
                                 f"{error_name(library, status)})")
    if status != 0:
        raise BackendUnavailable(f"CUDA cannot use the GPU: {error_name(library, status)}")
    if count.value == 0:
        raise BackendUnavailable("no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and nvidia-smi)")
    return Gpu(name=_device_name(library), compute_capability=_compute_capability(library),
               driver=_version(_query_int(library, "cudaDriverGetVersion")),
               runtime=_version(_query_int(library, "cudaRuntimeGetVersion")))


def _query_int(library: ctypes.CDLL, function: str, *args) -> int:
    value = ctypes.c_int(0)
    status = getattr(library, function)(ctypes.byref(value), *args)
    if status != 0:
        raise BackendUnavailable(f"CUDA {function} failed: {error_name(library, status)}")
    return value.value


def _compute_capability(library: ctypes.CDLL) -> str:
    major = _query_int(library, "cudaDeviceGetAttribute", ctypes.c_int(_ATTR_CC_MAJOR), ctypes.c_int(0))
    minor = _query_int(library, "cudaDeviceGetAttribute", ctypes.c_int(_ATTR_CC_MINOR), ctypes.c_int(0))
    return f"{major}.{minor}"


def _device_name(library: ctypes.CDLL) -> str:
    # CUDA 12+ headers map cudaGetDeviceProperties to the _v2 symbol; older
    # libraries only have the plain one.
    get_properties = getattr(library, "cudaGetDeviceProperties_v2", None) or library.cudaGetDeviceProperties
    buffer = ctypes.create_string_buffer(_PROPS_BYTES)
    status = get_properties(buffer, ctypes.c_int(0))
    if status != 0:
        raise BackendUnavailable(f"CUDA cudaGetDeviceProperties failed: {error_name(library, status)}")
    return buffer.raw[:_NAME_BYTES].split(b"\0", 1)[0].decode(errors="replace")


def memory_used_mb() -> float | None:
    """Memory in use on GPU 0, all processes together; None without a GPU.
    The query creates a CUDA context: call it for GPU work only."""
    try:
        library = cuda_runtime_library()
    except MDHRError:
        return None
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    if library.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != 0:
        return None
    return (total.value - free.value) / 2**20
