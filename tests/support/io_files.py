"""Files for the trust-boundary battery: a face video at a constant or a
variable rate (PyAV's H.264), and a small tmpfs for a full or read-only disk."""
from __future__ import annotations

import contextlib
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support import DATA

FACE = DATA / "face.jpg"


def entries(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False):
    """A small RAM file system at ``folder`` (root and mount rights needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes stay free."""
    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    with open(folder / "ballast", "wb") as handle:
        with contextlib.suppress(OSError):
            handle.write(b"\0" * max(free - leave, 0))


def write_video(path: Path, frames: int = 24, size=(320, 240), times=None, rate: int = 30, fmt: str = "mp4"):
    """Real H.264 through PyAV: the face photo moving, at ``rate`` or at the
    presentation ``times`` given (a variable rate)."""
    import av

    photo = cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)
    clock = Fraction(1, 90000) if times is not None else Fraction(1, rate)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = clock
        for k in range(frames):
            canvas = np.full((size[1], size[0], 3), 90, np.uint8)
            face = cv2.resize(photo, (size[1] * 2 // 3, size[1] * 2 // 3))
            x = 10 + (k * 3) % max(size[0] - face.shape[1] - 20, 1)
            canvas[20:20 + face.shape[0], x:x + face.shape[1]] = face
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts = round(times[k] / clock) if times is not None else k
            frame.time_base = clock
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


