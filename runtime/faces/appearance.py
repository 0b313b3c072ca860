"""A cheap appearance cue for telling tracked faces apart.

When two faces cross, box overlap alone cannot say which face is which: the
front face's box overlaps both tracks, and a track re-checking its last box
snaps onto whichever face is there.  After the crossing, and when a face
leaves and comes back, the tracker asks instead how alike a detection looks
to each track.

``describe`` takes the face box (levelled by the eye line where the detector
gave landmarks) at 32x32 pixels and returns two unit vectors: the layout of
light and dark (grey levels, zero mean; tells a face from its mirror image
and from a differently lit one) and a hue-saturation histogram (skin, hair,
glasses, clothing at the chin).  It is not a face-recognition embedding: two
people who look alike under similar light may match.  ``similarity`` is the
mean cosine of the two parts, 1 for identical crops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SIZE = 32
HUE_BINS, SATURATION_BINS = 12, 4


@dataclass(frozen=True)
class Appearance:
    layout: np.ndarray  # [SIZE * SIZE // 4] unit vector
    colour: np.ndarray  # [HUE_BINS * SATURATION_BINS] unit vector

    def blend(self, newer: "Appearance", weight: float) -> "Appearance":
        """A running mean (``weight`` for the newer look), renormalised."""
        return Appearance(_unit((1 - weight) * self.layout + weight * newer.layout),
                          _unit((1 - weight) * self.colour + weight * newer.colour))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def describe(rgb: np.ndarray, box: tuple[float, float, float, float], angle: float = 0.0) -> Appearance:
    """The appearance of the face in ``box`` (x, y, w, h) rolled by ``angle`` degrees."""
    x, y, w, h = box
    side = max(w, h)
    centre = (x + w / 2, y + h / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, SIZE / side)
    matrix[0, 2] += SIZE / 2 - centre[0]
    matrix[1, 2] += SIZE / 2 - centre[1]
    patch = cv2.warpAffine(rgb, matrix, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    grey = cv2.resize(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), (SIZE // 2, SIZE // 2),
                      interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
    hsv = cv2.cvtColor(patch, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256])
    # The square root tempers the dominant skin bins (Hellinger's kernel).
    return Appearance(_unit(grey - grey.mean()), _unit(np.sqrt(histogram.reshape(-1))))


def similarity(a: Appearance, b: Appearance) -> float:
    """Mean cosine of layout and colour: 1 for the same crop, about 0 for unrelated ones."""
    value = 0.5 * (float(a.layout @ b.layout) + float(a.colour @ b.colour))
    return value if math.isfinite(value) else 0.0
