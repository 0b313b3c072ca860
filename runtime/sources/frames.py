"""Frames from a video file, a folder of images or a single image.

``FrameSource(path)`` is iterable; it yields ``Frame`` objects (RGB uint8
HxWx3, 0-based index, timestamp in seconds) one at a time, decoding as it
goes, so memory stays flat whatever the length of the video.  Grey, 16-bit
or 4-channel inputs come out as 3-channel 8-bit RGB.  Every problem a user
can fix (missing path, unreadable file, nothing decodable) is an
``MDHRError`` with one line saying what to do.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.sources.video import VideoPass, probe

log = logging.getLogger(__name__)

# Still-image suffixes OpenCV reads; anything else in a folder is ignored.
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".sr", ".ras",
})
# Image sequences carry no frame rate; 30 fps is the common camera rate and
# OpenFace's default for sequences.  Override with ``fps=``.
DEFAULT_SEQUENCE_FPS = 30.0


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based position in the source
    timestamp: float  # seconds from the start
    rgb: np.ndarray  # H x W x 3 uint8, RGB order


def natural_key(name: str) -> tuple:
    """Sort key under which frame2 comes before frame10."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any image OpenCV returns (grey, BGR, BGRA; 8- or 16-bit) as RGB uint8."""
    if image.dtype != np.uint8:
        # 16-bit or float images: scale the full range down to 8 bits.
        top = 65535.0 if image.dtype == np.uint16 else max(float(image.max()), 1.0)
        image = np.clip(image.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FrameSource:
    """Stream the frames of ``path``: a video (anything FFmpeg decodes), a
    folder of images (natural order), or one image.

    ``fps`` overrides the frame rate: for image sequences (default 30) and
    for videos whose header has none.  ``fps`` and ``frame_count`` are the
    best knowledge before decoding (``frame_count`` may be None or, for
    some containers, an estimate).

    After a pass, ``frames_read`` is how many frames decoded and
    ``truncated`` whether a video was not read to its end (the decoder
    failed, or the last frame shown ends short of the stream's declared
    duration: ``timeline.py``); ``shortfall`` says which, in one clause."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        self.frames_read = 0
        self.shortfall = ""  # why the last pass over a video stopped early; '' when it did not
        if not self.path.exists():
            raise MDHRError(f"input not found: {self.path}; check the path")
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise MDHRError(f"frame rate must be a positive number, got {fps}")
        if self.path.is_dir():
            self.kind = "images"
            self._images = self._list_images()
            self.fps = fps or DEFAULT_SEQUENCE_FPS
            self.frame_count: int | None = len(self._images)
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            if not cv2.haveImageReader(str(self.path)):
                raise MDHRError(f"{self.path} is not an image OpenCV reads (empty, damaged or another format "
                                "under an image name)")
            self.kind = "image"
            self._images = [self.path]
            self.fps = fps or DEFAULT_SEQUENCE_FPS
            self.frame_count = 1
        else:
            self.kind = "video"
            self._images = []
            self.fps, self.frame_count = self._probe_video(fps)

    @property
    def truncated(self) -> bool:
        """The last pass over a video stopped before its end (``shortfall``
        says why).  Images and folders are always whole."""
        return bool(self.shortfall)

    def __repr__(self) -> str:
        return f"FrameSource({str(self.path)!r}, kind={self.kind}, fps={self.fps}, frames={self.frame_count})"

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            return self._video_frames()
        return self._image_frames()

    # -- images ------------------------------------------------------------

    def _list_images(self) -> list[Path]:
        """The folder's images in natural order.  Hidden files are not frames
        (macOS leaves ._frame1.jpg beside frame1.jpg on other disks); every
        image's signature is checked now, so an empty or foreign file is
        named before any work rather than in the middle of a run."""
        images = [p for p in self.path.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not images:
            raise MDHRError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:5])}, ...) in folder {self.path}")
        images.sort(key=lambda p: natural_key(p.name))
        unreadable = [p for p in images if not cv2.haveImageReader(str(p))]
        if unreadable:
            empty = unreadable[0].stat().st_size == 0
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise MDHRError(f"{unreadable[0]}{more} in the frame folder is {'empty (0 bytes)' if empty else 'not an image'}"
                            f"; remove it or replace it with the frame")
        return images

    def _image_frames(self) -> Iterator[Frame]:
        self.frames_read = 0
        for index, image_path in enumerate(self._images):
            # IMREAD_UNCHANGED keeps 16-bit depth so to_rgb can scale it
            # properly; IMREAD_COLOR would silently truncate it.
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            if image is None or image.size == 0:
                raise MDHRError(f"cannot read image {image_path}: the file is damaged or not an image")
            self.frames_read = index + 1
            yield Frame(index=index, timestamp=index / self.fps, rgb=to_rgb(image))

    # -- video -------------------------------------------------------------

    def _probe_video(self, fps: float | None) -> tuple[float, int | None]:
        if self.path.stat().st_size == 0:
            raise MDHRError(f"video file {self.path} is empty (0 bytes)")
        self._info = probe(self.path)
        if fps is None and self._info.fps is None:
            log.warning("%s has no usable frame rate; assuming %s fps (set fps= to override)",
                        self.path, DEFAULT_SEQUENCE_FPS)
        return float(fps or self._info.fps or DEFAULT_SEQUENCE_FPS), self._info.frame_count

    def _video_frames(self) -> Iterator[Frame]:
        """Timestamps are presentation times from the first frame shown
        (variable frame rates keep theirs), kept increasing for the
        tracker's smoothing; a frame without one gets index / fps."""
        video = VideoPass(self.path, self._info, self.fps)
        self.frames_read, self.shortfall = 0, ""
        origin, previous = None, -math.inf
        for time, rgb in video:
            if origin is None and math.isfinite(time):
                origin = time
            stamp = time - origin if math.isfinite(time) else self.frames_read / self.fps
            stamp = 0.0 if self.frames_read == 0 else max(stamp, previous + 1e-6)
            previous = stamp
            self.frames_read += 1
            yield Frame(index=self.frames_read - 1, timestamp=stamp, rgb=rgb)
        if self.frames_read == 0:
            raise MDHRError(f"no frame could be decoded from {self.path}: the video is empty or damaged")
        self.shortfall = video.timeline.shortfall(origin if origin is not None else 0.0)
