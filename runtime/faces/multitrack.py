"""Every face in the frame, each followed with a stable ``face_id``.

``MultiFaceTracker`` is ``FaceTracker`` for many faces.  Each track re-checks
its own last box with the detector's cheap ``refine`` every frame and
smooths it with its own ``BoxSmoother``, exactly as the single-face tracker
does, so a face tracked among others gets the boxes it would get alone.
The full-frame search runs on the same grid (new faces are noticed within
``REDETECT_EVERY`` frames), on the frame a track is lost, and, while a track
is missing or nobody is there, densely for ``SPARSE_AFTER`` frames and then
every ``SPARSE_SEARCH_EVERY``-th frame.

Which detection belongs to which track (``cue``):

* ``overlap``: box overlap with the track's last box only.
* ``motion``: overlap with where the track's velocity puts it now.
* ``appearance`` (the default): motion, plus ``appearance.py``'s cue.  It
  settles the cases overlap cannot: two tracks that snapped onto the same
  face when one passed in front of the other keep the face that looks like
  them (the other is missing until its face shows again), and a face that
  comes back after leaving, within ``KEEP_S`` seconds, gets its id back when
  it looks like the face that left.  Otherwise it gets a new id.

Ids are numbered from 0 in the order faces are first seen; faces first seen
on the same frame are numbered from left to right (by their box centres,
top to bottom for equal ones), so the ids of a photo or of a video's first
frame do not depend on a pixel of cropping or on the detector's confidences.

``python -m scripts.faces_multiface`` measures the identity switches of each
cue on crossing footage.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mdhr_runtime.faces.appearance import Appearance, describe, similarity
from mdhr_runtime.faces.detection import Detection, FaceDetector, MTCNNDetector, box_iou
from mdhr_runtime.faces.tracking import BoxSmoother, FaceResult, SearchSchedule, eye_roll_degrees

CUES = ("overlap", "motion", "appearance")
# Faces smaller than this (the longer side of the detector's box, in frame
# pixels) are not tracked: their 224-pixel crop would be upsampled more than
# 4.5x, little AU detail survives, and each tracked face costs a frame stage
# per frame.  It is also the smallest face the search finds at 640x360.
DEFAULT_MIN_FACE = 40
# A face that left is remembered this long for its id to be given back.
KEEP_S = 3.0
# Least appearance similarity at which a returning face is the one that
# left.  Measured (scripts.faces_multiface, ``likeness``): the same face 0.93 to
# 1.0 at three places, sizes and rolls; the footage's other "people"
# (crowd.py: mirrored, hue-turned, darker, desaturated) 0.40 to 0.74.
SAME_FACE = 0.85
# ... and where the track's motion predicts it: a face coming out from behind
# another scored 0.73 to 0.84 in its first frames on the crossing footage.
LIKELY_SAME_FACE = 0.65
# Weight of a new look in a track's running appearance.
APPEARANCE_RATE = 0.1
# A new track starts only from a face at most this much covered by a tracked one.
NEW_FACE_COVER = 0.05
# A face seen whole has a margin of this share of its size free of others.
BESIDE = 0.15
# ... and a new face whose box lies this much inside a missing track's
# expected box waits to look like someone.
EXPECTED_COVER = 0.2
# A missing track's motion is extrapolated this long at most.
MOTION_HORIZON_S = 2.0
# Two tracks whose re-checked boxes overlap this much hold the same face.
SAME_BOX = 0.5
# A detection overlapping a track's box this much is that track's face (the
# single-face tracker's rule).
TRACK_OVERLAP = 0.3


@dataclass(frozen=True)
class TrackedFace:
    face_id: int
    face: FaceResult


@dataclass(frozen=True)
class TrackedFaces:
    """What one ``MultiFaceTracker.update`` left: the faces found, the ids
    given up, the ids alive (a copy: the tracker moves on to the next frame)."""

    faces: list[TrackedFace]
    expired: list[int]
    ids: list[int]


class _Track:
    def __init__(self, face_id: int, detection: Detection, appearance: Appearance, timestamp: float,
                 smoother: BoxSmoother):
        self.face_id = face_id
        self.detection: Detection | None = detection  # None while missing
        self.box = detection.box  # last box seen
        self.appearance = appearance
        self.velocity = (0.0, 0.0)  # box centre, pixels per second
        self.seen_at = timestamp
        self.clear_box, self.clear_at = detection.box, timestamp  # last box seen whole
        self.smoother = smoother
        self.found_by_search = 0  # frame number of the last search that found it (set by the tracker)
        self.missing_at: int | None = None  # frame number of the last frame it was not found

    def predicted_box(self, timestamp: float) -> tuple[float, float, float, float]:
        """The last box seen whole, moved on by the track's velocity (for up
        to MOTION_HORIZON_S seconds)."""
        dt = min(max(timestamp - self.clear_at, 0.0), MOTION_HORIZON_S)
        x, y, w, h = self.clear_box
        return (x + self.velocity[0] * dt, y + self.velocity[1] * dt, w, h)

    def see(self, detection: Detection, appearance: Appearance | None, timestamp: float) -> FaceResult:
        """This frame's detection; ``appearance`` None when the face is partly
        covered (its box and look then are not its own: neither the look nor
        the velocity learn from it)."""
        dt = timestamp - self.clear_at
        if appearance is not None:  # only a face seen whole, not one partly covered
            if self.detection is not None and 0 < dt <= MOTION_HORIZON_S:
                (ox, oy), (nx, ny) = _centre(self.clear_box), _centre(detection.box)
                step = ((nx - ox) / dt, (ny - oy) / dt)
                self.velocity = tuple(0.5 * v + 0.5 * s for v, s in zip(self.velocity, step))
            self.appearance = self.appearance.blend(appearance, APPEARANCE_RATE)
            self.clear_box, self.clear_at = detection.box, timestamp
        self.detection, self.box, self.seen_at = detection, detection.box, timestamp
        return self.smoother(detection, timestamp)

    def counted(self, face: FaceResult, number: int, searched: bool) -> FaceResult:
        """``face`` with the frames since the search found it and since it was missing."""
        if searched:
            self.found_by_search = number
        return replace(face, since_detection=number - self.found_by_search,
                       since_missing=None if self.missing_at is None else number - self.missing_at)


def _centre(box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


class MultiFaceTracker:
    """Every face of at least ``min_face`` pixels, each with its own id (ids
    count from 0 in order of appearance and are never reused).  ``update``
    returns the faces found in a frame; ``expired`` then lists the ids given
    up at that frame (missing for more than ``keep_s`` seconds)."""

    def __init__(self, detector: FaceDetector | None = None, *, min_face: int = DEFAULT_MIN_FACE,
                 cue: str = "appearance", schedule: SearchSchedule | None = None, min_confidence: float = 0.9,
                 keep_s: float = KEEP_S, smoother=BoxSmoother):
        if cue not in CUES:
            raise ValueError(f"unknown tracking cue {cue!r}: use one of {', '.join(CUES)}")
        self.detector = detector if detector is not None else MTCNNDetector()
        self.min_face = min_face
        self.cue = cue
        self.schedule = schedule or SearchSchedule()
        self.min_confidence = min_confidence
        self.keep_s = keep_s
        self._make_smoother = smoother
        self.reset()

    def reset(self) -> None:
        self.tracks: list[_Track] = []
        self.expired: list[int] = []
        self.searches = 0
        self._next_id = 0
        self._frames_seen = 0
        self._since_loss = 0  # frames since a track went missing (or since the start)

    @property
    def ids(self) -> list[int]:
        """Ids of the tracks alive (found or missing but remembered)."""
        return [t.face_id for t in self.tracks]

    def snapshot(self, faces: list[TrackedFace]) -> TrackedFaces:
        """``faces`` (what ``update`` just returned) with the ids given up and alive now."""
        return TrackedFaces(faces, list(self.expired), self.ids)

    def update(self, rgb: np.ndarray, timestamp: float) -> list[TrackedFace]:
        number = self._frames_seen
        self._frames_seen += 1
        active = [t for t in self.tracks if t.detection is not None]
        found: dict[_Track, tuple[Detection, Appearance]] = {}
        refine = getattr(self.detector, "refine", None)
        if refine is not None and not self.schedule.on_grid(number):
            for track in active:
                detection = refine(rgb, track.detection.box)
                if detection is not None and detection.confidence >= self.min_confidence:
                    found[track] = (detection, _look(rgb, detection))
            self._settle_shared_faces(found, timestamp)
        missing = [t for t in self.tracks if t not in found]
        lost_now = any(t.detection is not None for t in missing)
        # Someone is missing, or nobody is there: search densely just after a
        # loss, then sparsely.
        waiting = (bool(missing) or not self.tracks) and self.schedule.search_without_face(number, self._since_loss)
        refined = set(found)
        if self.schedule.on_grid(number) or lost_now or waiting:
            self._search(rgb, timestamp, found, missing, number)
        return self._finish_frame(found, timestamp, number, refined)

    # -- association ---------------------------------------------------------

    def _settle_shared_faces(self, found: dict, timestamp: float) -> None:
        """Two tracks whose re-checked boxes hold one face (one passed in front
        of the other): the track the face fits best keeps it."""
        tracks = sorted(found, key=lambda t: t.face_id)
        for i, a in enumerate(tracks):
            for b in tracks[i + 1:]:
                if a not in found or b not in found:
                    continue
                if box_iou(found[a][0].box, found[b][0].box) > SAME_BOX:
                    detection, look = found[a]
                    loser = b if self._fit(a, detection, look, timestamp) >= self._fit(b, detection, look, timestamp) \
                        else a
                    del found[loser]

    def _fit(self, track: _Track, detection: Detection, look: Appearance, timestamp: float) -> float:
        """How well a detection fits a track under the chosen cue (higher is better)."""
        if self.cue == "overlap":
            return box_iou(track.box, detection.box)
        fit = box_iou(track.predicted_box(timestamp), detection.box)
        if self.cue == "appearance":
            fit += similarity(track.appearance, look)
        return fit

    def _eligible(self, track: _Track, detection: Detection, look: Appearance, timestamp: float) -> bool:
        """Whether a detection from a search may be this track's face at all."""
        if track.detection is not None:  # tracked up to the last frame: it must overlap
            return box_iou(track.box, detection.box) > TRACK_OVERLAP
        if self.cue == "overlap":
            return box_iou(track.box, detection.box) > TRACK_OVERLAP
        if self.cue == "motion":
            return box_iou(track.predicted_box(timestamp), detection.box) > TRACK_OVERLAP
        alike = similarity(track.appearance, look)
        # A face coming out from behind another shows only part of itself at
        # first: where the track's motion puts it, a weaker likeness will do.
        return alike >= SAME_FACE or (alike >= LIKELY_SAME_FACE and
                                      box_iou(track.predicted_box(timestamp), detection.box) > TRACK_OVERLAP)

    def _search(self, rgb: np.ndarray, timestamp: float, found: dict, missing: list[_Track], number: int) -> None:
        """Full search: detections for the tracks not found yet, then new tracks."""
        self.searches += 1
        candidates = [d for d in self.detector.detect(rgb)
                      if d.confidence >= self.min_confidence and max(d.box[2], d.box[3]) >= self.min_face]
        taken = [d for d, _ in found.values()]
        candidates = [d for d in candidates if all(box_iou(d.box, t.box) <= TRACK_OVERLAP for t in taken)]
        looks = [_look(rgb, d) for d in candidates]
        pairs = sorted(((self._fit(t, d, a, timestamp), k, t) for t in missing
                        for k, (d, a) in enumerate(zip(candidates, looks)) if self._eligible(t, d, a, timestamp)),
                       key=lambda p: (-p[0], p[1], p[2].face_id))
        used: set[int] = set()
        for _, k, track in pairs:
            if k in used or track in found:
                continue
            used.add(k)
            found[track] = (candidates[k], looks[k])
        expected = [t.predicted_box(timestamp) for t in self.tracks
                    if t not in found and timestamp - t.clear_at <= MOTION_HORIZON_S]
        # New faces take ids from left to right (box centres; top to bottom
        # where they share a column), not in the detector's order, which
        # follows confidences and changes when the frame is cropped by a pixel.
        for k in sorted(range(len(candidates)), key=lambda k: _centre(candidates[k].box)):
            detection, look = candidates[k], looks[k]
            # A face partly behind another, or where a missing track's motion
            # puts it, may be that track's face coming out from behind, not
            # looking like itself yet: it starts a track once clear (or once
            # the missing track's motion has moved on).
            others = [d.box for d, _ in found.values()]
            if k not in used and _covered(detection.box, others) <= NEW_FACE_COVER and \
                    _covered(detection.box, expected) <= EXPECTED_COVER:
                track = _Track(self._next_id, detection, look, timestamp, self._make_smoother())
                # a track begun after the run's first frame was missing the frame before
                track.missing_at = number - 1 if number > 0 else None
                self._next_id += 1
                self.tracks.append(track)
                found[track] = (detection, look)

    def _finish_frame(self, found: dict, timestamp: float, number: int, refined: set) -> list[TrackedFace]:
        faces, self.expired, kept = [], [], []
        for track in self.tracks:
            if track in found:
                detection, look = found[track]
                others = [d.box for t, (d, _) in found.items() if t is not track]
                clear = _covered(_grown(detection.box, BESIDE), others) == 0
                face = track.see(detection, look if clear else None, timestamp)
                faces.append(TrackedFace(track.face_id, track.counted(face, number, track not in refined)))
                kept.append(track)
                continue
            track.missing_at = number
            if track.detection is not None:
                track.detection = None
                self._since_loss = 0
            if timestamp - track.seen_at > self.keep_s:
                self.expired.append(track.face_id)
            else:
                kept.append(track)
        self.tracks = kept
        self._since_loss += 1
        return sorted(faces, key=lambda f: f.face_id)


def _grown(box, fraction: float) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x - fraction * w, y - fraction * h, w * (1 + 2 * fraction), h * (1 + 2 * fraction))


def _covered(box, others) -> float:
    """The largest share of ``box``'s area that one of ``others`` covers."""
    x, y, w, h = box
    share = 0.0
    for ox, oy, ow, oh in others:
        iw = max(0.0, min(x + w, ox + ow) - max(x, ox))
        ih = max(0.0, min(y + h, oy + oh) - max(y, oy))
        share = max(share, iw * ih / max(w * h, 1e-9))
    return share


def _look(rgb: np.ndarray, detection: Detection) -> Appearance:
    angle = eye_roll_degrees(detection.landmarks) if detection.landmarks is not None else 0.0
    return describe(rgb, detection.box, angle)

