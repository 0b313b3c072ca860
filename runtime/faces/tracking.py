"""Face tracking: one stable face box per frame from per-frame detections.

``FaceTracker`` follows one face (the largest, or the one it already
follows) and smooths its box with a 1-euro filter, since MDHR differences
consecutive frames and box jitter would read as facial motion.  It says
plainly when a frame has no face, and in a long face-less stretch it runs
the detector's full-frame search on a sparse, fixed schedule instead of on
every frame (``SPARSE_SEARCH_EVERY``).  ``multitrack.py`` follows every
face with the same pieces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mdhr.errors import InputError, MDHRError
from mdhr_runtime.faces.detection import Detection, FaceDetector, MTCNNDetector, box_iou


@dataclass(frozen=True)
class FaceResult:
    """The face of one frame as the rest of the runtime sees it.

    ``box`` is the smoothed (x, y, w, h) in original pixels and ``angle`` the
    smoothed in-plane roll in degrees (0 without landmarks); both are None /
    0 when ``success`` is False, which always comes with confidence 0.

    ``since_detection``: frames since the detector's full search last found
    this face (0: this frame's search did; in between, the cheap re-check
    followed it); None where no detector ran (aligned crops).
    ``since_missing``: frames since the last frame this face was not found
    (1: found again on this frame), None when it was found on every frame
    since tracking began (``quality.py`` flags a gap from these)."""

    success: bool
    confidence: float
    box: tuple[float, float, float, float] | None = None
    angle: float = 0.0
    landmarks: np.ndarray | None = None  # this frame's raw [5, 2] points
    raw_box: tuple[float, float, float, float] | None = None  # the detector's own box
    since_detection: int | None = None
    since_missing: int | None = None

    @classmethod
    def missing(cls) -> "FaceResult":
        return cls(success=False, confidence=0.0)


class OneEuroFilter:
    """Casiez et al.'s 1-euro filter on a vector: heavy smoothing while the
    signal is still (kills detector jitter, which MDHR would read as facial
    motion), light smoothing while it moves fast (keeps lag small).

    ``speed_scale`` lets the caller express speed in its own unit (here: face
    sizes per second), so one set of parameters fits near and far faces."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = 1.0):
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self.value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self, value: np.ndarray | None = None) -> None:
        self.value = None if value is None else np.asarray(value, dtype=np.float64).copy()
        self._speed = None if value is None else np.zeros_like(self.value)

    def __call__(self, x: np.ndarray, dt: float, speed_scale=1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None:
            self.reset(x)
            return self.value.copy()
        dt = max(dt, 1e-3)
        a_d = self._alpha(self.derivative_cutoff, dt)
        self._speed = a_d * (x - self.value) / dt + (1 - a_d) * self._speed
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed) / speed_scale
        a = self._alpha(cutoff, dt)
        self.value = a * x + (1 - a) * self.value
        return self.value.copy()


def eye_roll_degrees(landmarks: np.ndarray) -> float:
    """In-plane rotation of the face: the angle of the line between the eyes."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


# Full searches run on every REDETECT_EVERY-th frame counted from a tracker's
# first (to notice new or bigger faces).
REDETECT_EVERY = 30
# After SPARSE_AFTER frames in a row without a face, the full search runs only
# on every SPARSE_SEARCH_EVERY-th frame (a divisor of REDETECT_EVERY, so the
# grid frames stay search frames): a face that comes back is found at most
# SPARSE_SEARCH_EVERY - 1 frames late (0.3 s at 30 fps), and a face-less
# stretch costs a tenth of the searches.  A search costs 20 ms at 640x360 and
# 33 ms at 960x540 here; decoding 1.5 ms (measured 2026-11-25).
SPARSE_AFTER = 15
SPARSE_SEARCH_EVERY = 10


@dataclass(frozen=True)
class SearchSchedule:
    """When a tracker runs the detector's full-frame search.  Frame numbers
    count from the tracker's first frame, so trackers started on any grid
    frame of a video search on the same frames (``segments.py`` relies on
    it)."""

    redetect_every: int = REDETECT_EVERY
    sparse_every: int = SPARSE_SEARCH_EVERY
    sparse_after: int = SPARSE_AFTER

    def __post_init__(self):
        if self.redetect_every < 1 or self.sparse_every < 1 or self.redetect_every % self.sparse_every:
            raise MDHRError(f"the sparse search step {self.sparse_every} must divide the search grid "
                            f"{self.redetect_every}")

    def on_grid(self, frame_number: int) -> bool:
        return frame_number % self.redetect_every == 0

    def search_without_face(self, frame_number: int, frames_without_face: int) -> bool:
        """Whether to search a frame when no face is being tracked: every frame
        just after a loss (a blur or a turn loses a face for a frame or two),
        sparsely once the stretch is long (nobody is there)."""
        return frames_without_face < self.sparse_after or frame_number % self.sparse_every == 0


class BoxSmoother:
    """One track's box, roll and their 1-euro filter (see ``FaceTracker``)."""

    def __init__(self, min_cutoff: float = 0.5, beta: float = 5.0, cut_jump: float = 0.5,
                 max_gap_s: float = 0.5, smooth: bool = True):
        self.cut_jump = cut_jump
        self.max_gap_s = max_gap_s
        self.smooth = smooth
        self._filter = OneEuroFilter(min_cutoff, beta, derivative_cutoff=3.0)
        self._last_time: float | None = None

    def reset(self) -> None:
        self._filter.reset()
        self._last_time = None

    def __call__(self, detection: Detection, timestamp: float) -> FaceResult:
        x, y, w, h = detection.box
        angle = eye_roll_degrees(detection.landmarks) if detection.landmarks is not None else 0.0
        # Filter centre, log-size (scale changes are multiplicative) and roll.
        state = np.array([x + w / 2, y + h / 2, math.log(w), math.log(h), angle])
        dt = math.inf if self._last_time is None else timestamp - self._last_time
        if dt <= 0:  # repeated timestamps (some containers): assume 30 fps
            dt = 1 / 30
        if self._should_restart(state, dt):
            self._filter.reset(state)
        # Speed units: face sizes/s for the centre, 4 (log units)/s for the
        # size, 30 degrees/s for the roll.  Measured: with size in plain log
        # units its own noise kept the cutoff high and let jitter through.
        size = math.sqrt(w * h)
        smooth = self._filter(state, dt, np.array([size, size, 4.0, 4.0, 30.0])) if self.smooth else state
        self._last_time = timestamp
        cx, cy, lw, lh, roll = (float(v) for v in smooth)
        sw, sh = math.exp(lw), math.exp(lh)
        return FaceResult(success=True, confidence=detection.confidence,
                          box=(cx - sw / 2, cy - sh / 2, sw, sh), angle=roll,
                          landmarks=detection.landmarks, raw_box=detection.box)

    def _should_restart(self, state: np.ndarray, dt: float) -> bool:
        previous = self._filter.value
        if previous is None or dt > self.max_gap_s:
            return True
        size = math.exp((previous[2] + previous[3]) / 2)
        jump = math.hypot(state[0] - previous[0], state[1] - previous[1]) / size
        rescale = abs((state[2] + state[3]) - (previous[2] + previous[3])) / 2
        return jump > self.cut_jump or rescale > math.log(1.5)


class FaceTracker:
    """One face per frame, with a box stable enough to difference frames.

    Each frame: if a face is being tracked and the detector can ``refine`` a
    known box, only that cheap check runs; a full search runs after a loss
    and on every ``redetect_every``-th frame (to notice a bigger face), on the
    fixed grid of ``SearchSchedule``: after a common search two trackers'
    detections agree, which is what lets ``segments.py`` split a long video
    and stitch it back exactly.  In a long face-less stretch the search runs
    sparsely (``SPARSE_SEARCH_EVERY``).  Among several faces the one
    overlapping the track wins, else the largest (``prefer="largest"``) or the
    most confident; ``others`` then says how many more faces the last search
    saw.  The box centre, size and roll go through a 1-euro filter
    (``BoxSmoother``; parameters tuned with measure_faces.py: jitter of a
    still face down 4x); a jump larger than ``cut_jump`` face sizes, a change
    of size over 1.5x, or ``max_gap_s`` seconds without a face restart the
    filter, so a scene cut is followed at once rather than glided to.
    """

    def __init__(self, detector: FaceDetector | None = None, *, redetect_every: int = REDETECT_EVERY,
                 sparse_every: int = SPARSE_SEARCH_EVERY, prefer: str = "largest", min_confidence: float = 0.9,
                 min_cutoff: float = 0.5, beta: float = 5.0,
                 cut_jump: float = 0.5, max_gap_s: float = 0.5, smooth: bool = True):
        if prefer not in ("largest", "confident"):
            raise InputError(f"unknown face preference {prefer!r}: use 'largest' or 'confident'")
        self.detector = detector if detector is not None else MTCNNDetector()
        self.schedule = SearchSchedule(max(1, redetect_every), min(sparse_every, max(1, redetect_every)))
        self.prefer = prefer
        self.min_confidence = min_confidence
        self._smoother = BoxSmoother(min_cutoff, beta, cut_jump, max_gap_s, smooth)
        self.reset()

    @property
    def redetect_every(self) -> int:
        return self.schedule.redetect_every

    def reset(self) -> None:
        """Forget the track (call between unrelated videos)."""
        self._smoother.reset()
        self._last_detection: Detection | None = None
        self._frames_seen = 0
        self._without_face = 0  # frames in a row without a face
        self._found_by_search = 0  # frame number of the last search that found the face
        self._missing_at: int | None = None  # frame number of the last frame without a face
        self._searched = False  # whether this frame's face came from a full search
        self.searches = 0  # full searches run
        self.others = 0  # faces besides the tracked one at the last search
        self.most_others = 0  # the most seen at any search

    def update(self, rgb: np.ndarray, timestamp: float) -> FaceResult:
        """The face of this frame (RGB uint8) taken at ``timestamp`` seconds."""
        number = self._frames_seen
        detection = self._find(rgb)
        self._last_detection = detection
        if detection is None:
            self._without_face += 1
            self._missing_at = number
            return FaceResult.missing()
        self._without_face = 0
        if self._searched:
            self._found_by_search = number
        return replace(self._smoother(detection, timestamp), since_detection=number - self._found_by_search,
                       since_missing=None if self._missing_at is None else number - self._missing_at)

    def _find(self, rgb: np.ndarray) -> Detection | None:
        tracked = self._last_detection
        refine = getattr(self.detector, "refine", None)
        number = self._frames_seen
        self._frames_seen += 1
        self._searched = False
        if tracked is not None and refine is not None and not self.schedule.on_grid(number):
            found = refine(rgb, tracked.box)
            if found is not None and found.confidence >= self.min_confidence:
                return found
        if tracked is None and not self.schedule.search_without_face(number, self._without_face):
            return None
        self.searches += 1
        self._searched = True
        candidates = [d for d in self.detector.detect(rgb) if d.confidence >= self.min_confidence]
        self.others = max(len(candidates) - 1, 0)
        self.most_others = max(self.most_others, self.others)
        return self._choose(candidates, tracked)

    def _choose(self, candidates: list[Detection], tracked: Detection | None) -> Detection | None:
        if not candidates:
            return None
        if tracked is not None:
            overlaps = [box_iou(d.box, tracked.box) for d in candidates]
            best = int(np.argmax(overlaps))
            if overlaps[best] > 0.3:
                return candidates[best]
        if self.prefer == "confident":
            return max(candidates, key=lambda d: d.confidence)
        return max(candidates, key=lambda d: d.area)
