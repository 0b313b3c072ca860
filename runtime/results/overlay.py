"""The annotated video: the input with each scored face's box, id and AU bars.

Every frame of the input is re-read (``FrameSource``, so frame numbers match
the CSV's), drawn on and encoded as H.264 in MP4 with PyAV.  H.264 because
it is the one codec every browser plays (Chromium, Firefox, Safari, Edge),
and PyAV's wheels ship an encoder for it; VP9 would miss older Safari and
encodes several times slower.  The output has the input's frame count,
size and frame rate (one output frame per input frame, pts = frame number);
an odd width or height gains one black column or row at the right or
bottom (H.264 in 4:2:0 needs even sides), which leaves every box where the
face is.

What a frame shows, scaled with the frame height (designed at 360 lines):
  - each face's box and ``face N`` in that face's colour (stable per id);
  - beside the box, one bar per AU: score from -1 to 1, a tick at the
    threshold, filled orange and its name on orange when active.  The
    panel goes where it covers no face's box or label and no other panel
    (``PanelPlacer``): beside, below or above the box (the side it had on
    the frame before first), else the free place nearest the face, else
    it is left out on that frame (the report's timeline has the scores);
  - a red frame border and "face not found" where no face was scored;
  - the frame number and timestamp, bottom left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from mdhr.errors import InputError, MDHRError, param
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.results import palette
from mdhr_runtime.sources.frames import FrameSource

# H.264 in MP4, yuv420p: what browsers decode.  ``+faststart`` moves the
# index to the front so a browser can start and seek before the whole file
# has loaded.
CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23", "movflags": "+faststart"}

# Colours per face id (RGB), distinct on video and for common colour
# blindness (Okabe-Ito, less black and yellow, which vanish on faces).
FACE_COLOURS = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0))
ACTIVE = palette.ACTIVE  # the plots' and the report's active colour
INACTIVE = palette.INACTIVE_STOPS[1]  # the palest inactive blue: an inactive bar reads on the dark panel
MISSING = (220, 30, 30)
TEXT = (255, 255, 255)
PANEL = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_colour(face_id: int | None) -> tuple[int, int, int]:
    """The colour of a face id: the same on every frame (None: the one face)."""
    return FACE_COLOURS[(face_id or 0) % len(FACE_COLOURS)]


@dataclass(frozen=True)
class FaceMark:
    """What the overlay draws for one face on one frame."""

    box: tuple[float, float, float, float]
    face_id: int | None
    scores: np.ndarray | None  # [num_aus]; None: box without scores


@dataclass(frozen=True)
class Layout:
    """Sizes in pixels for a frame height (readable at 360 lines)."""

    scale: float

    @classmethod
    def for_height(cls, height: int) -> "Layout":
        return cls(max(height / 360.0, 0.5))

    def px(self, value: float) -> int:
        return max(1, int(round(value * self.scale)))

    @property
    def font(self) -> float:
        return 0.38 * self.scale

    @property
    def row(self) -> int:
        return self.px(11)

    @property
    def bar(self) -> int:
        return self.px(44)

    @property
    def name(self) -> int:
        return self.px(34)


class FrameArtist:
    """Draws the marks of one frame onto its RGB image (in place)."""

    def __init__(self, au_names: Sequence[str], threshold: float, size: tuple[int, int]):
        self.au_names = tuple(au_names)
        self.threshold = threshold
        self.width, self.height = size
        self.layout = Layout.for_height(self.height)
        lay = self.layout
        self.panel_size = (lay.name + lay.bar + lay.px(8), lay.row * len(self.au_names) + lay.px(6))
        self.placer = PanelPlacer((self.width, self.height), self.panel_size, lay.px(4))

    def _tagged(self, mark: FaceMark) -> tuple[int, int, int, int]:
        """The face's box with its id label above it, as (x, y, w, h)."""
        x, y, w, h = (int(round(v)) for v in mark.box)
        label = "face" if mark.face_id is None else f"face {mark.face_id}"
        (tw, th), _ = cv2.getTextSize(label, FONT, self.layout.font * 1.1, 1)
        tag = th + self.layout.px(6)
        return x, max(y - tag, 0), max(w, tw + self.layout.px(6)), h + min(tag, y)

    def draw(self, image: np.ndarray, marks: Sequence[FaceMark], number: int, timestamp: float) -> np.ndarray:
        places = self.placer.place([self._tagged(mark) for mark in marks],
                                   [(mark.face_id, mark.scores is not None) for mark in marks])
        for mark, place in zip(marks, places):
            self._face(image, mark, place)
        if not marks:
            self._missing(image)
        self._clock(image, number, timestamp)
        return image

    def _text(self, image, text, origin, colour=TEXT, scale=1.0):
        cv2.putText(image, text, origin, FONT, self.layout.font * scale, colour, 1, cv2.LINE_AA)

    def _face(self, image: np.ndarray, mark: FaceMark, place: tuple[int, int] | None) -> None:
        lay = self.layout
        colour = face_colour(mark.face_id)
        x, y, w, h = (int(round(v)) for v in mark.box)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, lay.px(2))
        label = "face" if mark.face_id is None else f"face {mark.face_id}"
        (tw, th), _ = cv2.getTextSize(label, FONT, lay.font * 1.1, 1)
        top = max(y - th - lay.px(6), 0)
        cv2.rectangle(image, (x, top), (x + tw + lay.px(6), top + th + lay.px(6)), colour, -1)
        self._text(image, label, (x + lay.px(3), top + th + lay.px(3)), scale=1.1)
        if mark.scores is not None and place is not None:
            self._bars(image, mark.scores, place, colour)

    def _bars(self, image: np.ndarray, scores: np.ndarray, place: tuple[int, int], colour) -> None:
        """One bar per AU in the panel whose top left is ``place``."""
        lay = self.layout
        left, top = place
        panel_w, panel_h = self.panel_size
        region = image[top:top + panel_h, left:left + panel_w]
        region[:] = (region * 0.35 + np.asarray(PANEL) * 0.65).astype(np.uint8)
        cv2.rectangle(image, (left, top), (left + panel_w - 1, top + panel_h - 1), colour, 1)
        bar_left = left + lay.name + lay.px(4)
        tick = bar_left + int(round((self.threshold + 1) / 2 * lay.bar))
        for k, (name, score) in enumerate(zip(self.au_names, scores)):
            row_top = top + lay.px(3) + k * lay.row
            active = bool(np.isfinite(score) and score >= self.threshold)
            if active:
                cv2.rectangle(image, (left + 1, row_top), (bar_left - lay.px(2), row_top + lay.row - 2), ACTIVE, -1)
            self._text(image, name, (left + lay.px(3), row_top + lay.row - lay.px(3)))
            cv2.rectangle(image, (bar_left, row_top + 1), (bar_left + lay.bar, row_top + lay.row - 2), (70, 70, 70), -1)
            if np.isfinite(score):
                length = int(round((float(np.clip(score, -1, 1)) + 1) / 2 * lay.bar))
                cv2.rectangle(image, (bar_left, row_top + 2), (bar_left + length, row_top + lay.row - 3),
                              ACTIVE if active else INACTIVE, -1)
            cv2.line(image, (tick, row_top), (tick, row_top + lay.row - 1), TEXT, 1)

    def _missing(self, image: np.ndarray) -> None:
        lay = self.layout
        cv2.rectangle(image, (0, 0), (self.width - 1, self.height - 1), MISSING, lay.px(4))
        label = "face not found"
        (tw, th), _ = cv2.getTextSize(label, FONT, lay.font * 1.4, 1)
        cv2.rectangle(image, (lay.px(6), lay.px(6)), (lay.px(14) + tw, lay.px(14) + th), MISSING, -1)
        self._text(image, label, (lay.px(10), lay.px(10) + th), scale=1.4)

    def _clock(self, image: np.ndarray, number: int, timestamp: float) -> None:
        lay = self.layout
        minutes, seconds = divmod(timestamp, 60.0)
        label = f"frame {number}  {int(minutes)}:{seconds:06.3f}"
        (tw, th), _ = cv2.getTextSize(label, FONT, lay.font * 1.1, 1)
        bottom = self.height - lay.px(6)
        cv2.rectangle(image, (lay.px(4), bottom - th - lay.px(6)), (lay.px(10) + tw, bottom + lay.px(2)), PANEL, -1)
        self._text(image, label, (lay.px(7), bottom - lay.px(2)), scale=1.1)


Rect = tuple[int, int, int, int]  # x, y, w, h


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


class PanelPlacer:
    """Where each face's AU panel goes on a frame: never over a face's box
    or id label, never over another panel, inside the frame.  Tries, in
    order, the side the face's panel had on the frame before (so panels do
    not jump), right of the box, left, below, above; then the free place
    nearest the face on a grid of half-panel steps; else no panel."""

    SIDES = ("right", "left", "below", "above")

    def __init__(self, frame: tuple[int, int], panel: tuple[int, int], gap: int):
        self.width, self.height = frame
        self.panel_w, self.panel_h = panel
        self.gap = gap
        self.sides: dict[int | None, str] = {}

    def place(self, boxes: Sequence[Rect], faces: Sequence[tuple[int | None, bool]]) -> list[tuple[int, int] | None]:
        """``boxes``: every face's box with its label; ``faces``: (face_id,
        wants a panel) for each.  Returns each panel's top left, or None."""
        taken = [tuple(int(v) for v in box) for box in boxes]
        places: list[tuple[int, int] | None] = [None] * len(boxes)
        for k in sorted(range(len(boxes)), key=lambda k: (faces[k][0] is None, faces[k][0] or 0)):
            face_id, wanted = faces[k]
            if not wanted:
                continue
            place = self._free_place(taken[k], taken, face_id)
            if place is not None:
                places[k] = place
                taken.append((place[0], place[1], self.panel_w, self.panel_h))
        return places

    def _side(self, box: Rect, side: str) -> tuple[int, int]:
        x, y, w, h = box
        left = {"right": x + w + self.gap, "left": x - self.panel_w - self.gap}.get(side, x)
        top = {"below": y + h + self.gap, "above": y - self.panel_h - self.gap}.get(side, y)
        # along the box's side, the panel may slide to stay inside the frame
        if side in ("right", "left"):
            top = min(max(top, 0), self.height - self.panel_h)
        else:
            left = min(max(left, 0), self.width - self.panel_w)
        return left, top

    def _fits(self, left: int, top: int, taken: Sequence[Rect]) -> bool:
        if left < 0 or top < 0 or left + self.panel_w > self.width or top + self.panel_h > self.height:
            return False
        panel = (left, top, self.panel_w, self.panel_h)
        return not any(_overlaps(panel, other) for other in taken)

    def _free_place(self, box: Rect, taken: Sequence[Rect], face_id: int | None) -> tuple[int, int] | None:
        remembered = self.sides.get(face_id)
        for side in ((remembered,) if remembered else ()) + self.SIDES:
            left, top = self._side(box, side)
            if self._fits(left, top, taken):
                self.sides[face_id] = side
                return left, top
        step_x, step_y = max(self.panel_w // 2, 1), max(self.panel_h // 2, 1)
        centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        grid = [(left, top) for top in range(0, self.height - self.panel_h + 1, step_y)
                for left in range(0, self.width - self.panel_w + 1, step_x)]
        grid.sort(key=lambda p: (p[0] + self.panel_w / 2 - centre[0]) ** 2 + (p[1] + self.panel_h / 2 - centre[1]) ** 2)
        return next((p for p in grid if self._fits(p[0], p[1], taken)), None)


def marks_by_frame(table) -> dict[int, list[FaceMark]]:
    """Frame index -> the faces a ``FrameTable`` scored on it."""
    marks: dict[int, list[FaceMark]] = {}
    for row in table.rows:
        faces = marks.setdefault(row.index, [])
        if row.face.success and row.face.box:
            faces.append(FaceMark(tuple(row.face.box), row.face_id, row.scores))
    return marks


def even_size(width: int, height: int) -> tuple[int, int]:
    """The encoded size: H.264 in 4:2:0 needs even sides, so an odd side
    gains one row or column (``pad_even``)."""
    return width + width % 2, height + height % 2


def pad_even(image: np.ndarray) -> np.ndarray:
    """``image`` with a black row below and/or column to the right where
    its side is odd: every box keeps its pixel coordinates."""
    height, width = image.shape[:2]
    if not (height % 2 or width % 2):
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)))


def check_overlay_input(path: str | Path, option: str = param("overlay")) -> None:
    """Refuse, before any work, an input that cannot be annotated: one that
    gives no frame.  ``option`` is the user's option that asked for it."""
    try:
        for _ in FrameSource(path):
            return
    except MDHRError as error:
        raise InputError(f"{option}: {error}") from None
    raise InputError(f"{option}: {path} has no frame to annotate; give a video or image with frames")


@dataclass
class OverlayStats:
    frames: int
    seconds_drawing: float
    seconds_encoding: float

    @property
    def ms_per_frame(self) -> float:
        return 1000 * (self.seconds_drawing + self.seconds_encoding) / max(self.frames, 1)


# The clock of a variable-rate overlay: MPEG's 90 kHz, fine enough for any
# frame time a container stores to the millisecond.
VARIABLE_RATE_CLOCK = Fraction(1, 90000)


def variable_rate(timestamps: Sequence[float], fps: float) -> bool:
    """Frames whose presentation times stray from frame number / rate by
    more than half a frame: a variable-rate video."""
    times = np.asarray(timestamps, dtype=np.float64)
    return bool(len(times) and np.abs(times - np.arange(len(times)) / fps).max() > 0.5 / fps)


def encode_frames(path: Path, frames: Iterable[tuple[np.ndarray, float]], fps: float,
                  draw=lambda image, number, timestamp: image, timed: bool = False) -> OverlayStats:
    """Encode (RGB image, timestamp) pairs to H.264 MP4 at ``path`` (written
    as is: callers stage it), each after ``draw``.  Frame k gets pts k at
    1/fps, so count and rate equal the input's; with ``timed`` (a
    variable-rate input) each frame keeps its own timestamp instead, so the
    video shows every frame when the results' timeline says."""
    import av

    rate = Fraction(fps).limit_denominator(1001 * 1000)
    clock = VARIABLE_RATE_CLOCK if timed else 1 / rate
    last_pts = -1
    drawing = encoding = 0.0
    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for number, (image, timestamp) in enumerate(frames, start=1):
            start = time.perf_counter()
            image = pad_even(draw(image, number, timestamp))
            middle = time.perf_counter()
            if stream is None:
                stream = container.add_stream(CODEC, rate=rate, options=dict(ENCODER_OPTIONS))
                stream.width, stream.height = image.shape[1], image.shape[0]
                stream.pix_fmt = PIXEL_FORMAT
                stream.codec_context.time_base = clock
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = max(last_pts + 1, round(timestamp / clock)) if timed else number - 1
            frame.time_base = clock
            last_pts = frame.pts
            for packet in stream.encode(frame):
                container.mux(packet)
            drawing += middle - start
            encoding += time.perf_counter() - middle
            count += 1
        if stream is not None:
            start = time.perf_counter()
            for packet in stream.encode():
                container.mux(packet)
            encoding += time.perf_counter() - start
    return OverlayStats(count, drawing, encoding)


def write_overlay(table, video: str | Path, path: str | Path) -> OverlayStats:
    """Write ``video`` annotated with ``table``'s results (a ``FrameTable``
    scored from it) to ``path``, staged beside it and renamed when whole."""
    with atomic_path(path) as temporary:
        return render_overlay(table, video, temporary)


def render_overlay(table, video: str | Path, path: Path) -> OverlayStats:
    """``write_overlay`` into ``path`` as it is (the caller stages it)."""
    source = FrameSource(video)
    marks = marks_by_frame(table)
    artist: list[FrameArtist] = []

    def frames():
        for frame in source:
            yield frame.rgb, frame.timestamp

    def draw(image, number, timestamp):
        if not artist:  # the size is known at the first frame
            artist.append(FrameArtist(table.au_names, table.threshold, (image.shape[1], image.shape[0])))
        return artist[0].draw(image, marks.get(number - 1, []), number, timestamp)

    times = sorted({row.index: row.timestamp for row in table.rows}.items())
    return encode_frames(path, frames(), source.fps, draw, timed=variable_rate([t for _, t in times], source.fps))
