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
    """Stream the frames of ``path``: a video (anything OpenCV decodes), a
    folder of images (natural order), or one image.

    ``fps`` overrides the frame rate: for image sequences (default 30) and
    for videos whose header has none.  ``fps`` and ``frame_count`` are the
    best knowledge before decoding (``frame_count`` may be None or, for
    some containers, an estimate).

    After a pass, ``frames_read`` is how many frames decoded and
    ``truncated`` says whether a video ended before the frames its container
    declares (the file is cut short or damaged; decoding stops at the first
    frame it cannot read)."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        self.frames_read = 0
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
        """The last pass over a video read fewer frames than it declares.
        Containers without a frame index give an estimate from duration x
        fps, so a shortfall within rounding (1 frame, plus 1 per 500) is not
        counted."""
        if self.kind != "video" or not self.frame_count:
            return False
        return self.frames_read < self.frame_count - 1 - self.frame_count // 500

    def __repr__(self) -> str:
        return f"FrameSource({str(self.path)!r}, kind={self.kind}, fps={self.fps}, frames={self.frame_count})"

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            return self._video_frames()
        return self._image_frames()

    # -- images ------------------------------------------------------------

    def _list_images(self) -> list[Path]:
        images = [p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise MDHRError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:5])}, ...) in folder {self.path}")
        return sorted(images, key=lambda p: natural_key(p.name))

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

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise MDHRError(f"cannot open {self.path} as a video: the file is damaged or its format "
                            f"is not one OpenCV can decode; try converting it to mp4 (H.264)")
        return capture

    def _probe_video(self, fps: float | None) -> tuple[float, int | None]:
        if self.path.stat().st_size == 0:
            raise MDHRError(f"video file {self.path} is empty (0 bytes)")
        capture = self._open()
        try:
            header_fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            # Decode one frame now, so a file that opens but holds no
            # picture fails here, before any output is started.
            decodable, _ = capture.read()
        finally:
            capture.release()
        if not decodable:
            raise MDHRError(f"no frame could be decoded from {self.path}: the video is empty or damaged")
        if fps is None:
            if not (header_fps > 0 and math.isfinite(header_fps) and header_fps < 1000):
                log.warning("%s has no usable frame rate; assuming %s fps (set fps= to override)",
                            self.path, DEFAULT_SEQUENCE_FPS)
                header_fps = DEFAULT_SEQUENCE_FPS
            fps = header_fps
        return float(fps), (count if count > 0 else None)

    def _video_frames(self) -> Iterator[Frame]:
        capture = self._open()
        self.frames_read = 0
        try:
            index = 0
            previous_time = -math.inf
            while True:
                ok, image = capture.read()
                if not ok or image is None:
                    break
                timestamp = self._timestamp(capture, index, previous_time)
                previous_time = timestamp
                index += 1
                self.frames_read = index
                yield Frame(index=index - 1, timestamp=timestamp, rgb=to_rgb(image))
        finally:
            capture.release()
        if index == 0:
            raise MDHRError(f"no frame could be decoded from {self.path}: the video is empty or damaged")

    def _timestamp(self, capture: cv2.VideoCapture, index: int, previous: float) -> float:
        """The container's presentation time when it is usable (variable
        frame-rate video), else index / fps.  Some backends report 0 or go
        backwards; timestamps must increase for the tracker's smoothing."""
        msec = capture.get(cv2.CAP_PROP_POS_MSEC)
        nominal = index / self.fps
        if index > 0 and msec > 0 and math.isfinite(msec) and msec / 1000.0 > previous:
            return msec / 1000.0
        return max(nominal, previous + 1e-6) if index > 0 else 0.0
