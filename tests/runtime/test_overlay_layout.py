"""Several faces on one frame: face ids that do not depend on a pixel of
cropping, and AU panels that never cover a face, its label or each other."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr_runtime.faces.multitrack import MultiFaceTracker
from mdhr_runtime.results.overlay import FaceMark, FrameArtist, PanelPlacer
from tests.support.crowd import CrowdMaker, side_by_side

SIZE = (1001, 667)  # an odd-sized group photo


@pytest.fixture(scope="module")
def group(photo):
    """Four people side by side on one photo, with their true face boxes."""
    frame = CrowdMaker(photo, 4, size=SIZE).render(side_by_side(4, SIZE, face_height=200)(0), 0.0)
    return frame.rgb, frame.truths


CROPS = {"none": (0, 0, 0, 0), "left": (1, 0, 0, 0), "top": (0, 1, 0, 0), "right": (0, 0, 1, 0),
         "bottom": (0, 0, 0, 1), "left and top": (1, 1, 0, 0)}


def test_face_ids_go_left_to_right_whatever_pixel_is_cropped(group):
    """Ids of faces first seen together are numbered by their box centres,
    left to right: the same person gets the same id on every 1-pixel crop."""
    rgb, truths = group
    for name, (left, top, right, bottom) in CROPS.items():
        cropped = rgb[top:rgb.shape[0] - bottom, left:rgb.shape[1] - right]
        faces = MultiFaceTracker().update(np.ascontiguousarray(cropped), 0.0)
        assert [f.face_id for f in faces] == [0, 1, 2, 3], name
        for face in faces:  # id k is the k-th person from the left
            x, y, w, h = face.face.box
            tx, ty, tw, th = truths[face.face_id]
            assert abs((x + left + w / 2) - (tx + tw / 2)) < tw / 4, (name, face.face_id)


def test_panels_on_a_group_photo_leave_every_face_as_it_was(group):
    rgb, truths = group
    names = ("AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
    artist = FrameArtist(names, 0.5, SIZE)
    marks = [FaceMark(box, k, np.linspace(-1, 1, len(names))) for k, box in enumerate(truths)]
    drawn = artist.draw(rgb.copy(), marks, 1, 0.0)
    for x, y, w, h in truths:  # inside each box (clear of its outline), not a pixel changed
        inner = (slice(int(y) + 4, int(y + h) - 4), slice(int(x) + 4, int(x + w) - 4))
        assert np.array_equal(drawn[inner], rgb[inner])
    assert not np.array_equal(drawn, rgb)


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


BOXES = st.lists(st.tuples(st.integers(0, 600), st.integers(0, 330), st.integers(10, 250), st.integers(10, 250)),
                 min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(boxes=BOXES, frames=st.integers(1, 3))
def test_a_placed_panel_covers_no_face_and_no_other_panel(boxes, frames):
    """Any faces, however crowded, on several frames in a row: every panel
    placed lies inside the frame, off every face box and off the other
    panels; a panel left out is one that had no free place."""
    width, height = 640, 360
    placer = PanelPlacer((width, height), (90, 110), 3)
    for _ in range(frames):
        places = placer.place(boxes, [(k, True) for k in range(len(boxes))])
        panels = [(p[0], p[1], 90, 110) for p in places if p is not None]
        for panel in panels:
            assert 0 <= panel[0] and panel[0] + 90 <= width and 0 <= panel[1] and panel[1] + 110 <= height
            assert not any(_overlap(panel, box) for box in boxes)
        assert not any(_overlap(a, b) for i, a in enumerate(panels) for b in panels[i + 1:])
        if len(boxes) == 1:  # a face at most 250 px wide leaves 195 px on one side: its panel fits
            assert places[0] is not None
