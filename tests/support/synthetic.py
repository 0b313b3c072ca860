"""Test footage with a known face placement, made from one face photo.

The runtime's tests and ``measure_faces`` need video whose true face box is
known in every frame.  This module moves a photo of a face over a textured
background (translation, scale, a little roll), degrades some stretches
(blur, darkness, sensor noise) and leaves some frames without a face, and
reports where the face is.  It uses OpenCV and numpy (and PyAV for
H.264, ``write_h264``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

# Hand-labelled face box in tests/data/face.jpg (572x562): ear to ear and
# hairline to chin, the region an AU model needs.
PHOTO_FACE_BOX = (190.0, 150.0, 198.0, 250.0)
# Face-free parts of that photo (hills on the left, ruins on the right),
# tiled into the background texture.
PHOTO_BACKGROUNDS = ((0, 0, 170, 300), (400, 0, 172, 230))  # x, y, w, h


@dataclass(frozen=True)
class Placement:
    """Where the photo's face goes: centre (pixels), face height (pixels) and
    roll (degrees, counter-clockwise in the image)."""

    cx: float
    cy: float
    face_height: float
    roll: float = 0.0


@dataclass(frozen=True)
class SyntheticFrame:
    rgb: np.ndarray
    truth: tuple[float, float, float, float] | None  # face box (x, y, w, h) or None
    condition: str
    placement: Placement | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of footage: ``frames`` frames of one ``condition``.  Motion
    is smooth (sinusoidal drift), with ``speed`` scaling how fast."""

    # still | clean | blur | motion_blur | dark | very_dark | noise | small | tiny |
    # fast | roll | occluded | empty
    condition: str
    frames: int
    speed: float = 1.0


# About 18 s at 30 fps: every condition, with face-less stretches between.
DEFAULT_SEGMENTS = (
    Segment("still", 60, speed=0.05), Segment("clean", 60), Segment("blur", 30), Segment("motion_blur", 30), Segment("dark", 30),
    Segment("empty", 30), Segment("small", 45), Segment("fast", 45, speed=4.0),
    Segment("noise", 30), Segment("very_dark", 30), Segment("empty", 15),
    Segment("roll", 45), Segment("occluded", 30), Segment("tiny", 45), Segment("clean", 30),
)


class FootageMaker:
    """Renders frames of ``size`` (width, height) from an RGB face photo."""

    def __init__(self, photo_rgb: np.ndarray, size: tuple[int, int] = (640, 360),
                 face_box: tuple[float, float, float, float] = PHOTO_FACE_BOX, seed: int = 0,
                 background_photo: np.ndarray | None = None):
        """``photo_rgb`` holds the face at ``face_box``; the background is cut
        from the face-free parts of ``background_photo`` (by default the
        photo itself, which must then be tests/data/face.jpg)."""
        self.photo = photo_rgb
        self.size = size
        self.face_box = face_box
        self.rng = np.random.default_rng(seed)
        source = photo_rgb if background_photo is None else background_photo
        # Twice the frame size so the background can pan.
        width, height = size
        tiles = [cv2.resize(source[y:y + h, x:x + w], (width, height * 2), interpolation=cv2.INTER_CUBIC)
                 for x, y, w, h in PHOTO_BACKGROUNDS]
        self.background = np.hstack(tiles)
        self._mask = self._head_mask()

    def _head_mask(self) -> np.ndarray:
        """Soft ellipse over head and shoulders, so the pasted photo blends in
        instead of showing a rectangle edge that looks like a moving object."""
        x, y, w, h = self.face_box
        mask = np.zeros(self.photo.shape[:2], dtype=np.float32)
        centre = (int(x + w / 2), int(y + h * 0.55))
        cv2.ellipse(mask, centre, (int(w * 0.85), int(h * 0.85)), 0, 0, 360, 1.0, -1)
        return cv2.GaussianBlur(mask, (0, 0), sigmaX=w * 0.08)

    def background_at(self, t: float) -> np.ndarray:
        width, height = self.size
        ox = int((math.sin(t * 0.13) * 0.5 + 0.5) * width)
        oy = int((math.cos(t * 0.07) * 0.5 + 0.5) * height)
        return self.background[oy:oy + height, ox:ox + width].copy()

    def face_transform(self, place: Placement) -> np.ndarray:
        """2x3 affine taking photo pixels to frame pixels."""
        x, y, w, h = self.face_box
        scale = place.face_height / h
        m = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), place.roll, scale)
        m[0, 2] += place.cx - (x + w / 2)
        m[1, 2] += place.cy - (y + h / 2)
        return m

    def truth_box(self, place: Placement) -> tuple[float, float, float, float]:
        scale = place.face_height / self.face_box[3]
        w, h = self.face_box[2] * scale, self.face_box[3] * scale
        return (place.cx - w / 2, place.cy - h / 2, w, h)

    def render(self, place: Placement | None, t: float) -> np.ndarray:
        frame = self.background_at(t)
        return frame if place is None else self.paste(frame, place)

    def paste(self, frame: np.ndarray, place: Placement) -> np.ndarray:
        """``frame`` with the photo's head blended in at ``place``."""
        m = self.face_transform(place)
        size = self.size
        face = cv2.warpAffine(self.photo, m, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(self._mask, m, size, flags=cv2.INTER_LINEAR)[..., None]
        return (alpha * face + (1 - alpha) * frame).astype(np.uint8)

    def degrade(self, rgb: np.ndarray, condition: str, truth=None) -> np.ndarray:
        if condition == "blur":
            return cv2.GaussianBlur(rgb, (0, 0), sigmaX=2.5)
        if condition == "motion_blur":  # a horizontal smear of 15 pixels
            return cv2.filter2D(rgb, -1, np.full((1, 15), 1 / 15, dtype=np.float32))
        if condition in ("dark", "very_dark"):
            gain, sigma = (0.3, 3) if condition == "dark" else (0.12, 4)
            dark = rgb.astype(np.float32) * gain + self.rng.normal(0, sigma, rgb.shape)
            return np.clip(dark, 0, 255).astype(np.uint8)
        if condition == "noise":
            noisy = rgb.astype(np.float32) + self.rng.normal(0, 12, rgb.shape)
            return np.clip(noisy, 0, 255).astype(np.uint8)
        if condition == "occluded" and truth is not None:
            # A dark hand-sized patch over mouth and chin.
            x, y, w, h = truth
            out = rgb.copy()
            out[int(y + h * 0.62):int(y + h * 1.05), int(x + w * 0.1):int(x + w * 0.9)] = (60, 45, 40)
            return out
        return rgb

    def placement(self, condition: str, phase: float) -> Placement | None:
        """Smooth head motion: drift across the frame, a slow change of
        distance, and a roll of up to 10 degrees (25 for ``roll``)."""
        if condition == "empty":
            return None
        width, height = self.size
        base = height * {"small": 0.22, "tiny": 0.13}.get(condition, 0.55)
        max_roll = 25.0 if condition == "roll" else 10.0
        return Placement(
            cx=width / 2 + width * 0.25 * math.sin(phase * 0.9),
            cy=height / 2 + height * 0.08 * math.sin(phase * 1.3 + 1.0),
            face_height=base * (1 + 0.15 * math.sin(phase * 0.5)),
            roll=max_roll * math.sin(phase * 0.7 + 0.5),
        )

    def frames(self, segments=DEFAULT_SEGMENTS, fps: float = 30.0) -> Iterator[SyntheticFrame]:
        index, phase = 0, 0.0
        for segment in segments:
            for _ in range(segment.frames):
                # Motion advances a phase, so a change of speed is no jump.
                phase += segment.speed / fps
                place = self.placement(segment.condition, phase)
                truth = None if place is None else self.truth_box(place)
                rgb = self.degrade(self.render(place, index / fps), segment.condition, truth)
                yield SyntheticFrame(rgb=rgb, truth=truth, condition=segment.condition, placement=place)
                index += 1


def write_video(path, frames: list[np.ndarray], fps: float = 30.0, codec: str = "mp4v") -> None:
    """Write RGB (or grey) frames with OpenCV (mp4v or MJPG here), checking it worked."""
    height, width = frames[0].shape[:2]
    colour = frames[0].ndim == 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height), colour)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if colour else frame)
    finally:
        writer.release()


def write_h264(path, frames: Iterable[np.ndarray], times_ms: Iterable[int] | None = None, rotation: int = 0,
               faststart: bool = False, bframes: int = 2) -> None:
    """Encode RGB frames (streamed: any length) as H.264 with B-frames, as
    cameras and phones do, with PyAV, into ``path`` (mp4, mkv ... by
    suffix), at the presentation times ``times_ms`` (default 30 fps).
    ``rotation``: the display matrix's clockwise turn, as phones store it;
    ``faststart``: the MP4 index at the front."""
    from fractions import Fraction

    import av

    ms = Fraction(1, 1000)
    frames = iter(frames)
    first = next(frames)
    times = iter(times_ms) if times_ms is not None else (round(i * 1000 / 30) for i in itertools.count())
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = ms
        stream.options = {"bf": str(bframes), "g": "30", "preset": "veryfast"}
        if rotation:
            stream.set_display_rotation(-rotation)  # FFmpeg's angle is counter-clockwise
        for rgb, time in zip(itertools.chain([first], frames), times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = time, ms
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
