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
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# OpenCV refuses images above this many pixels instead of allocating them
# (its own default is 2^30, 3 GiB of RGB); read once, at its first imread.
MAX_IMAGE_PIXELS = 1 << 27  # 134 Mpx: 16384 x 8192, 384 MiB of RGB
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import cv2  # noqa: E402  (after the limit above)
import numpy as np

from mdhr.errors import InputError, MDHRError
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


# EXIF orientation (tag 0x0112) -> how to turn the stored pixels upright:
# (transpose rows and columns first, then flip rows, then flip columns).
_UPRIGHT = {1: (False, False, False), 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
            5: (True, False, False), 6: (True, False, True), 7: (True, True, True), 8: (True, True, False)}
EXIF_ORIENTATION = 0x0112


def upright(image: np.ndarray, orientation: int | None) -> np.ndarray:
    """``image`` (H x W [x C]) turned as its EXIF orientation says (a phone
    stores a portrait photo sideways with orientation 6); unknown values
    leave it as stored."""
    transpose, flip_rows, flip_columns = _UPRIGHT.get(orientation or 1, _UPRIGHT[1])
    if transpose:
        image = image.swapaxes(0, 1)
    if flip_rows:
        image = image[::-1]
    if flip_columns:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before its pixels are decoded."""

    width: int
    height: int
    frames: int  # more than 1: an animated image (GIF, WebP, APNG)
    orientation: int | None  # EXIF orientation, None when not recorded


def _too_large(path: Path, size: str) -> MDHRError:
    return InputError(f"{path} declares {size}, and an input image may have at most {MAX_IMAGE_PIXELS:,} (a "
                      "damaged or hostile file?); scale it down")


def read_header(path: Path) -> ImageHeader | None:
    """The header of an image Pillow identifies (None: one it does not, which
    OpenCV may still read); a declared size beyond ``MAX_IMAGE_PIXELS`` is
    refused before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in one line
            with Image.open(path) as image:
                width, height = image.size
                frames = int(getattr(image, "n_frames", 1) or 1)
                orientation = image.getexif().get(EXIF_ORIENTATION)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: no size to quote
        raise _too_large(path, f"over {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(path, f"{width} x {height} pixels")
    return ImageHeader(width, height, frames, orientation if isinstance(orientation, int) else None)


def animation_durations(path: Path) -> list[float]:
    """How long each frame of an animated image is shown, in seconds.  A
    frame that declares no duration (or 0, which browsers show for 0.1 s)
    gets 0.1 s."""
    from PIL import Image

    durations = []
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP sets a frame's duration when it decodes it
            milliseconds = image.info.get("duration") or 0
            durations.append(float(milliseconds) / 1000.0 if milliseconds and milliseconds > 0 else 0.1)
    return durations


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
            raise InputError(f"input not found: {self.path}; check the path")
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise InputError(f"frame rate must be a positive number, got {fps}")
        if self.path.is_dir():
            self.kind = "images"
            self._images = self._list_images()
            self.fps = fps or DEFAULT_SEQUENCE_FPS
            self.frame_count: int | None = len(self._images)
        elif self._is_image():
            self._images = [self.path]
            header = read_header(self.path)
            if header is not None and header.frames > 1:
                self.kind = "animation"
                self._durations = animation_durations(self.path)
                self.fps = fps or len(self._durations) / max(sum(self._durations), 1e-3)
                self.frame_count = len(self._durations)
            else:
                self.kind = "image"
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
        if self.kind == "animation":
            return self._animation_frames()
        return self._image_frames()

    def _is_image(self) -> bool:
        """A still image by its content: OpenCV knows its signature.  A file
        under an image name that is none (a video saved as .jpg) is tried as
        a video, and refused as an image only when FFmpeg cannot open it
        either."""
        if self.path.stat().st_size == 0 and self.path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"image {self.path} is empty (0 bytes)")
        if cv2.haveImageReader(str(self.path)) or (read_header(self.path) or ImageHeader(0, 0, 1, None)).frames > 1:
            return True
        if self.path.suffix.lower() not in IMAGE_SUFFIXES:
            return False
        try:
            probe(self.path)
        except MDHRError:
            raise InputError(f"{self.path} is not an image OpenCV reads (empty, damaged or another format "
                             "under an image name)") from None
        return False

    # -- images ------------------------------------------------------------

    def _list_images(self) -> list[Path]:
        """The folder's images in natural order.  Hidden files are not frames
        (macOS leaves ._frame1.jpg beside frame1.jpg on other disks); every
        image's signature is checked now, so an empty or foreign file is
        named before any work rather than in the middle of a run."""
        images = [p for p in self.path.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not images:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:5])}, ...) in folder {self.path}")
        images.sort(key=lambda p: natural_key(p.name))
        unreadable = [p for p in images if not cv2.haveImageReader(str(p))]
        if unreadable:
            empty = unreadable[0].stat().st_size == 0
            more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
            raise InputError(f"{unreadable[0]}{more} in the frame folder is {'empty (0 bytes)' if empty else 'not an image'}"
                             f"; remove it or replace it with the frame")
        return images

    def _image_frames(self) -> Iterator[Frame]:
        self.frames_read = 0
        for index, image_path in enumerate(self._images):
            header = read_header(image_path)  # refuses a bomb before OpenCV allocates it
            # IMREAD_UNCHANGED keeps 16-bit depth so to_rgb can scale it
            # properly (IMREAD_COLOR would truncate it), and leaves the EXIF
            # orientation to ``upright``.
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            if image is None or image.size == 0:
                raise InputError(f"cannot read image {image_path}: the file is damaged, not an image, or larger "
                                 f"than {MAX_IMAGE_PIXELS:,} pixels")
            self.frames_read = index + 1
            rgb = upright(to_rgb(image), header.orientation if header else None)
            yield Frame(index=index, timestamp=index / self.fps, rgb=rgb)

    def _animation_frames(self) -> Iterator[Frame]:
        """Every frame of an animated GIF, WebP or PNG, composed as a viewer
        shows it, at the time its display starts."""
        from PIL import Image, ImageSequence

        self.frames_read, start = 0, 0.0
        with Image.open(self.path) as image:
            orientation = image.getexif().get(EXIF_ORIENTATION)
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                rgb = upright(np.asarray(frame.convert("RGB")), orientation if isinstance(orientation, int) else None)
                self.frames_read = index + 1
                yield Frame(index=index, timestamp=start, rgb=rgb)
                start += self._durations[index] if index < len(self._durations) else 1.0 / self.fps

    # -- video -------------------------------------------------------------

    def _probe_video(self, fps: float | None) -> tuple[float, int | None]:
        if self.path.stat().st_size == 0:
            raise InputError(f"video file {self.path} is empty (0 bytes)")
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
            raise InputError(f"no frame could be decoded from {self.path}: the video is empty or damaged")
        self.shortfall = video.timeline.shortfall(origin if origin is not None else 0.0)
