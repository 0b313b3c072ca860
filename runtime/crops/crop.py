"""Face crops in the model's input format.

The official evaluation feeds aligned face crops through ``Resize(224)``,
``ToTensor`` and ImageNet ``Normalize``.  ``Cropper`` makes the aligned crop
from a frame and a tracked face (square, with margin, eyes levelled when the
detector gave landmarks); ``resize_aligned`` does the ``Resize(224)`` for
inputs that already are face crops; ``to_model_input`` does ``ToTensor`` +
``Normalize``.  ``crop_stream`` chains them over a stream of frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from mdhr.aus import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD
from mdhr.errors import InputError
from mdhr_runtime.faces.tracking import FaceResult, FaceTracker
from mdhr_runtime.sources.frames import Frame
from mdhr_runtime.timing import StageClock

# The ImageNet mean colour normalises to 0 under the official statistics:
# the neutral fill for parts of a crop outside the frame (black would read
# as a strong, moving edge).
MEAN_RGB = tuple(int(round(255 * m)) for m in IMAGE_MEAN)


class Normaliser:
    """``ToTensor`` then ``Normalize(mean, std)``, folded into one multiply-add
    per channel: (x / 255 - mean) / std == x * scale + offset.  The runtime
    builds it from the bundle card's ``mean`` and ``std``."""

    def __init__(self, mean=IMAGE_MEAN, std=IMAGE_STD):
        std = np.asarray(std, dtype=np.float32)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.offset = (-np.asarray(mean, dtype=np.float32) / std).astype(np.float32)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """RGB uint8 crops [..., H, W, 3] -> float32 [..., 3, H, W].  Anything
        but uint8 pixels is refused: float crops may already be scaled, and
        scaling twice would be silent nonsense."""
        if not isinstance(crops, np.ndarray) or crops.dtype != np.uint8 or crops.shape[-1:] != (3,):
            what = f"{crops.dtype} [{', '.join(map(str, crops.shape))}]" if isinstance(crops, np.ndarray) else \
                type(crops).__name__
            raise InputError(f"crops of {what} given; to_model_input takes RGB uint8 pixels [..., H, W, 3] "
                             "(0..255) and normalises them itself")
        normalised = crops.astype(np.float32) * self.scale + self.offset
        return np.ascontiguousarray(np.moveaxis(normalised, -1, -3))


IMAGENET = Normaliser()


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """RGB uint8 crops as the official model takes them (ImageNet statistics,
    pixel / 255 first, as ToTensor does)."""
    return IMAGENET(crops)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (close to PIL's antialiased bilinear
    that torchvision's Resize uses on images), bilinear when enlarging."""
    shrinking = size[0] < image.shape[1] or size[1] < image.shape[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_aligned(rgb: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image that already is an aligned face crop, as the official test
    transform sees it: ``Resize(size)`` (shorter side to ``size``).  A
    non-square input is then centre-cropped to ``size`` x ``size`` so clips
    stack; for square crops (the datasets') this is exactly Resize."""
    height, width = rgb.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = _resize(rgb, (new_w, new_h))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top:top + size, left:left + size])


class Cropper:
    """Square face crop around a tracked face.

    The crop is centred on the (smoothed) box, ``scale`` times its longer
    side, rotated by the (smoothed) eye roll when ``align`` and the detector
    gave landmarks, and resized to ``size``.  With MTCNN's box (brow to chin)
    a scale of 1.25 frames the whole face with hair line, ears and chin, as
    the datasets' aligned crops do.  Parts outside the frame are filled with
    the ImageNet mean colour, which normalises to 0.
    """

    def __init__(self, size: int = IMAGE_SIZE, scale: float = 1.25, align: bool = True):
        self.size = size
        self.scale = scale
        self.align = align

    def crop(self, rgb: np.ndarray, face: FaceResult) -> np.ndarray:
        """[size, size, 3] uint8 RGB crop of ``face`` (which must have a box)."""
        if not face.success or face.box is None:
            raise ValueError("Cropper.crop needs a found face; skip frames without one")
        x, y, w, h = face.box
        side = max(w, h) * self.scale
        angle = face.angle if self.align else 0.0
        # Warp at (about) the crop's own resolution first, then shrink with
        # area averaging: a direct bilinear warp from a big face to 224
        # pixels would alias, and aliasing flickers from frame to frame.
        work = max(self.size, int(math.ceil(side)))
        matrix = _crop_matrix((x + w / 2, y + h / 2), side, angle, work)
        crop = cv2.warpAffine(rgb, matrix, (work, work), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=MEAN_RGB)
        return crop if work == self.size else _resize(crop, (self.size, self.size))


def _crop_matrix(centre: tuple[float, float], side: float, angle: float, out: int) -> np.ndarray:
    """2x3 affine taking frame pixels to crop pixels: rotate by ``angle``
    degrees about the face centre (levels the eyes), scale ``side`` to
    ``out`` pixels, and put the centre in the middle."""
    matrix = cv2.getRotationMatrix2D(centre, angle, out / side)
    matrix[0, 2] += out / 2 - centre[0]
    matrix[1, 2] += out / 2 - centre[1]
    return matrix


@dataclass(frozen=True)
class CroppedFrame:
    """One frame's face, ready for the model: ``crop`` is float32 [3, 224, 224]
    (normalised), or None when no face was found in the frame."""

    index: int
    timestamp: float
    face: FaceResult
    crop: np.ndarray | None


def crop_stream(frames: Iterable[Frame], tracker: FaceTracker | None = None,
                cropper: Cropper | None = None, clock: StageClock | None = None,
                normalise: Normaliser = IMAGENET) -> Iterator[CroppedFrame]:
    """Track, crop and normalise each frame in turn (constant memory).

    ``tracker=None`` means the frames already are aligned face crops (the
    ``aligned=True`` path): no detection, just ``resize_aligned``, and every
    frame counts as a face found with confidence 1 and the whole image as box.
    ``clock`` books decoding, detection and cropping to their stages.
    """
    cropper = cropper or Cropper()
    clock = clock or StageClock()
    for frame in clock.timed(frames, "decode"):
        if tracker is None:
            yield aligned_crop(frame, cropper, normalise, clock)
            continue
        with clock.stage("detect"):
            face = tracker.update(frame.rgb, frame.timestamp)
        yield face_crop(frame, face, cropper, normalise, clock)


def aligned_crop(frame: Frame, cropper: Cropper, normalise: Normaliser, clock: StageClock) -> CroppedFrame:
    """A frame that already is an aligned face crop: the whole image is the face."""
    height, width = frame.rgb.shape[:2]
    face = FaceResult(success=True, confidence=1.0, box=(0.0, 0.0, float(width), float(height)))
    with clock.stage("preprocess"):
        crop = normalise(resize_aligned(frame.rgb, cropper.size))
    return CroppedFrame(index=frame.index, timestamp=frame.timestamp, face=face, crop=crop)


def face_crop(frame: Frame, face: FaceResult, cropper: Cropper, normalise: Normaliser,
              clock: StageClock) -> CroppedFrame:
    """The model input of one tracked face (no crop when it was not found)."""
    with clock.stage("preprocess"):
        crop = normalise(cropper.crop(frame.rgb, face)) if face.success else None
    return CroppedFrame(index=frame.index, timestamp=frame.timestamp, face=face, crop=crop)
