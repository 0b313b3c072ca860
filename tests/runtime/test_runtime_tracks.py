"""Face tracks without the model: every face with a stable id through
crossings, leaving and coming back, and the sparse search of face-less
stretches.  Real MTCNN on real mp4 footage made from tests/data/face.jpg;
the other "people" are transformations of that photo (tests.support.crowd:
mirrored and hue-turned, hue-turned the other way and darker)."""
from __future__ import annotations

import pytest

from mdhr_runtime.faces.detection import MTCNNDetector, box_iou
from mdhr_runtime.faces.multitrack import MultiFaceTracker
from mdhr_runtime.faces.tracking import SPARSE_AFTER, SPARSE_SEARCH_EVERY, FaceTracker
from mdhr_runtime.sources.frames import FrameSource
from tests.support.crowd import crossing, leave_and_return, side_by_side
from tests.support.footage import crowd_video, face_video
from tests.support.synthetic import Placement, Segment


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector()


def assigned_ids(tracker, video, truths) -> list[list]:
    """Per frame, the id given to each person: matched one to one by box
    overlap (> 0.3), None where the person is absent, "-" where not found."""
    out = []
    for frame, people in zip(FrameSource(video), truths):
        faces = tracker.update(frame.rgb, frame.timestamp)
        pairs = sorted(((box_iou(f.face.box, box), p, f.face_id) for p, box in enumerate(people) if box
                        for f in faces), reverse=True)
        got, used = {}, set()
        for overlap, person, face_id in pairs:
            if overlap > 0.3 and person not in got and face_id not in used:
                got[person], used = face_id, used | {face_id}
        out.append([None if box is None else got.get(p, "-") for p, box in enumerate(people)])
    return out


def switches(ids: list[list], person: int) -> int:
    seen = [row[person] for row in ids if row[person] not in (None, "-")]
    return sum(a != b for a, b in zip(seen, seen[1:]))


def test_two_faces_crossing_twice_keep_their_ids(detector, photo, tmp_path):
    video, truths = crowd_video(tmp_path / "crossing.mp4", photo, 2, crossing(90), 90)
    ids = assigned_ids(MultiFaceTracker(detector), video, truths)
    assert switches(ids, 0) == 0 and switches(ids, 1) == 0, ids
    first = ids[0]
    assert sorted(first) == [0, 1]
    # each is found on most frames; the one behind is hidden while they overlap
    for person in (0, 1):
        assert sum(row[person] == first[person] for row in ids) >= 0.75 * len(ids)


def test_a_face_that_leaves_and_returns_keeps_its_id_and_a_newcomer_gets_a_new_one(detector, photo, tmp_path):
    video, truths = crowd_video(tmp_path / "leave.mp4", photo, 3, leave_and_return(), 150)
    ids = assigned_ids(MultiFaceTracker(detector), video, truths)
    seated, walker = ids[0][0], ids[0][1]
    assert all(row[0] == seated for row in ids), ids
    returned = [row[1] for row in ids[60:90] if row[1] not in (None, "-")]
    assert returned and set(returned) == {walker}, ids  # back after 1 s away, with its id
    newcomer = [row[2] for row in ids if row[2] not in (None, "-")]
    assert newcomer and set(newcomer) == {2}, ids  # a new id, never one given before


def test_faces_below_min_face_are_not_tracked(detector, photo):
    from tests.support.crowd import CrowdMaker

    maker = CrowdMaker(photo, 2)
    frame = maker.render([Placement(160, 180, 170), Placement(480, 180, 70)], 0.0)
    everyone = MultiFaceTracker(detector, min_face=40).update(frame.rgb, 0.0)
    big_only = MultiFaceTracker(detector, min_face=100).update(frame.rgb, 0.0)
    assert len(everyone) == 2 and len(big_only) == 1
    assert box_iou(big_only[0].face.box, frame.truths[0]) > 0.5


@pytest.mark.parametrize("kind", ["largest", "all"])
def test_faceless_stretch_searches_sparsely_and_finds_the_returning_face_in_time(detector, photo, tmp_path, kind):
    """60 face-less frames: after SPARSE_AFTER frames the full search runs on
    every SPARSE_SEARCH_EVERY-th frame only; the face that comes back is found
    at most SPARSE_SEARCH_EVERY - 1 frames after its first frame."""
    video, has_face = face_video(tmp_path / "gap.mp4", photo,
                                 (Segment("clean", 20), Segment("empty", 63), Segment("clean", 25)))
    tracker = FaceTracker(detector) if kind == "largest" else MultiFaceTracker(detector)
    found, searches = [], []
    for frame in FrameSource(video):
        result = tracker.update(frame.rgb, frame.timestamp)
        found.append(result.success if kind == "largest" else bool(result))
        searches.append(tracker.searches)
    empty = range(20, 83)
    assert not any(found[i] for i in empty)
    in_gap = searches[82] - searches[19]
    assert in_gap <= SPARSE_AFTER + 1 + len(empty) // SPARSE_SEARCH_EVERY + 1, in_gap
    assert in_gap < len(empty) / 2
    back = found.index(True, 83)
    assert back - 83 <= SPARSE_SEARCH_EVERY - 1, back
    assert all(found[back:])


def test_side_by_side_faces_get_one_id_each(detector, photo, tmp_path):
    video, truths = crowd_video(tmp_path / "row.mp4", photo, 4, side_by_side(4), 8)
    ids = assigned_ids(MultiFaceTracker(detector), video, truths)
    assert all(row == ids[0] for row in ids) and sorted(ids[0]) == [0, 1, 2, 3], ids
