"""Footage of several faces with known identities and boxes, for the
multi-face tracker's tests and measurements.

Only one real face photo is available (tests/data/face.jpg), so the other
"people" are honest transformations of it, and look like it in everything
but what the transformation changes:

* person 0: the photo as it is;
* person 1: mirrored left-right, hue turned by 24 degrees;
* person 2: hue turned 24 degrees the other way, 15% darker;
* person 3: mirrored, desaturated by half.

A scaled copy would be the same person at another distance, so it is not a
new person.  Heads are blended over the photo's own background as in
``synthetic.FootageMaker``; a later person in the list is in front.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np

from tests.support.synthetic import PHOTO_FACE_BOX, FootageMaker, Placement


def people(photo_rgb: np.ndarray, count: int = 4) -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """(photo, face box) of ``count`` (at most 4) distinct-looking people."""
    width = photo_rgb.shape[1]
    x, y, w, h = PHOTO_FACE_BOX
    mirrored_box = (width - x - w, y, w, h)

    def recolour(rgb: np.ndarray, hue: int, saturation: float = 1.0, value: float = 1.0) -> np.ndarray:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.int32)
        hsv[..., 0] = (hsv[..., 0] + hue) % 180  # OpenCV hue: 0..179, 2 degrees a step
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * value, 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)

    mirror = np.ascontiguousarray(photo_rgb[:, ::-1])
    everyone = [(photo_rgb, PHOTO_FACE_BOX), (recolour(mirror, 12), mirrored_box),
                (recolour(photo_rgb, -12, value=0.85), PHOTO_FACE_BOX), (recolour(mirror, 0, saturation=0.5), mirrored_box)]
    if not 1 <= count <= len(everyone):
        raise ValueError(f"1 to {len(everyone)} people, not {count}")
    return everyone[:count]


@dataclass(frozen=True)
class CrowdFrame:
    rgb: np.ndarray
    truths: tuple[tuple[float, float, float, float] | None, ...]  # each person's face box, None when absent


class CrowdMaker:
    """Renders frames of ``size`` where person k is at ``placements[k]``."""

    def __init__(self, photo_rgb: np.ndarray, count: int, size: tuple[int, int] = (640, 360)):
        self.size = size
        self.makers = [FootageMaker(image, size=size, face_box=box, background_photo=photo_rgb)
                       for image, box in people(photo_rgb, count)]

    def render(self, placements: list[Placement | None], t: float) -> CrowdFrame:
        frame = self.makers[0].background_at(t)
        truths = []
        for maker, place in zip(self.makers, placements):
            if place is None:
                truths.append(None)
                continue
            frame = maker.paste(frame, place)
            truths.append(_visible(maker.truth_box(place), self.size))
        return CrowdFrame(frame, tuple(truths))

    def frames(self, script: Callable[[int], list[Placement | None]], count: int,
               fps: float = 30.0) -> Iterator[CrowdFrame]:
        for index in range(count):
            yield self.render(script(index), index / fps)


def _visible(box, size) -> tuple[float, float, float, float] | None:
    """A face box, or None when less than half of the face is in the frame."""
    x, y, w, h = box
    inside_w = min(x + w, size[0]) - max(x, 0.0)
    inside_h = min(y + h, size[1]) - max(y, 0.0)
    return box if inside_w > 0.5 * w and inside_h > 0.5 * h else None


# -- scripts: frame index -> each person's placement ---------------------------


def side_by_side(count: int, size: tuple[int, int] = (640, 360), face_height: float | None = None
                 ) -> Callable[[int], list[Placement | None]]:
    """``count`` faces in a row, each in its own column, drifting gently."""
    width, height = size
    face_height = face_height or min(0.5 * height, 0.6 * width / count)

    def script(index: int) -> list[Placement | None]:
        phase = index / 30.0
        return [Placement(cx=width * (k + 0.5) / count + 6 * math.sin(1.3 * phase + k),
                          cy=height * 0.5 + 5 * math.sin(0.9 * phase + 2 * k),
                          face_height=face_height * (1 + 0.03 * math.sin(0.7 * phase + k)),
                          roll=4 * math.sin(phase + k)) for k in range(count)]
    return script


def crossing(frames: int, size: tuple[int, int] = (640, 360)) -> Callable[[int], list[Placement | None]]:
    """Two faces walk past each other across the frame and back: person 0
    right to left and back, person 1 (a little larger: nearer, in front)
    the other way; they cross twice."""
    width, height = size

    def script(index: int) -> list[Placement | None]:
        s = 0.5 - 0.5 * math.cos(2 * math.pi * index / frames)  # 0 -> 1 -> 0
        left, right = width * 0.18, width * 0.82
        return [Placement(cx=right + (left - right) * s, cy=height * 0.52, face_height=height * 0.36, roll=3.0),
                Placement(cx=left + (right - left) * s, cy=height * 0.48, face_height=height * 0.4, roll=-3.0)]
    return script


def leave_and_return(size: tuple[int, int] = (640, 360), away: int = 30) -> Callable[[int], list[Placement | None]]:
    """Person 0 stays on the left; person 1 walks out of the right edge
    (frames 10-25), is gone ``away`` frames, and walks back in; then person 2,
    a newcomer, walks in from the right where person 1 was (person 1 leaves
    for good first)."""
    width, height = size
    seat = Placement(cx=width * 0.27, cy=height * 0.5, face_height=height * 0.42)
    out_at, back_at = 25, 25 + away
    gone_at, new_at = back_at + 40, back_at + 70

    def right(progress: float) -> Placement:  # 0: seated on the right, 1: outside the frame
        return Placement(cx=width * 0.72 + progress * width * 0.5, cy=height * 0.5, face_height=height * 0.42)

    def script(index: int) -> list[Placement | None]:
        if index < 10:
            one = right(0.0)
        elif index < out_at:
            one = right((index - 10) / 15)
        elif index < back_at:
            one = None
        elif index < back_at + 15:
            one = right(1 - (index - back_at) / 15)
        elif index < gone_at:
            one = right(0.0)
        elif index < gone_at + 15:
            one = right((index - gone_at) / 15)
        else:
            one = None
        two = None if index < new_at else right(max(0.0, 1 - (index - new_at) / 15))
        return [seat, one, two]
    return script
