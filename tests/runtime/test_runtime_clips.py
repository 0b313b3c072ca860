"""ClipWindows: non-overlapping windows, official last-frame padding,
batch padding, masks, faceless frames and streaming."""
from __future__ import annotations

import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.windows.clips import ClipWindows

FOUND = FaceResult(success=True, confidence=0.99, box=(0.0, 0.0, 10.0, 10.0))


def frame(index: int, face: bool = True) -> CroppedFrame:
    """A frame whose crop is filled with its own index, so positions can be
    traced through the batches."""
    crop = np.full((3, 224, 224), float(index), np.float32) if face else None
    return CroppedFrame(index=index, timestamp=index / 30, face=FOUND if face else FaceResult.missing(), crop=crop)


def values(batch) -> np.ndarray:
    """[B, T] the index each position's crop came from."""
    return batch.clips[:, :, 0, 0, 0]


def test_windows_padding_and_masks():
    batches = list(ClipWindows(clip_frames=4, batch_size=2).batches(frame(i) for i in range(11)))
    assert len(batches) == 2
    first, last = batches
    assert first.clips.shape == (2, 4, 3, 224, 224) and first.clips.dtype == np.float32
    assert first.frame_index.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert first.real.all() and first.has_face.all()
    # Window 3 holds frames 8..10 and repeats frame 10 (the official padding);
    # the batch's second window is padding, a copy of window 3.
    assert last.frame_index.tolist() == [[8, 9, 10, -1], [-1, -1, -1, -1]]
    assert last.real.tolist() == [[True, True, True, False], [False] * 4]
    assert not last.has_face[~last.real].any()
    assert values(last).tolist() == [[8, 9, 10, 10], [8, 9, 10, 10]]
    assert [f.index for f in last.frames] == [8, 9, 10]


def test_exact_multiple_needs_no_padding():
    batches = list(ClipWindows(clip_frames=4, batch_size=1).batches(frame(i) for i in range(8)))
    assert len(batches) == 2 and all(b.real.all() for b in batches)


def test_faceless_frames_reuse_a_neighbouring_face_and_are_marked():
    faces = [False, False, True, True, False, True, False, False, False, False]
    stream = (frame(i, face) for i, face in enumerate(faces))
    (a, b, c) = list(ClipWindows(clip_frames=4, batch_size=1).batches(stream))
    # Leading faceless frames take the first face of their window; later ones
    # the last face before them (carried across windows).
    assert values(a).tolist() == [[2, 2, 2, 3]]
    assert values(b).tolist() == [[3, 5, 5, 5]]
    assert values(c).tolist() == [[5, 5, 5, 5]]
    assert a.has_face.tolist() == [[False, False, True, True]]
    assert b.has_face.tolist() == [[False, True, False, False]]
    assert c.real.tolist() == [[True, True, False, False]]


def test_a_video_without_any_face_gets_neutral_input():
    (batch,) = list(ClipWindows(clip_frames=4).batches(frame(i, face=False) for i in range(3)))
    assert not batch.clips.any()  # zeros: the normalised ImageNet mean image
    assert batch.real.sum() == 3 and not batch.has_face.any()


def test_rows_map_outputs_back_to_frames():
    faces = [True, False, True, True, True]
    (batch,) = list(ClipWindows(clip_frames=4, batch_size=2).batches(frame(i, f) for i, f in enumerate(faces)))
    scores = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    rows = list(batch.rows(scores))
    assert [f.index for f, _ in rows] == [0, 1, 2, 3, 4]
    assert rows[1][1] is None
    assert rows[4][1].tolist() == scores[1, 0].tolist()
    with pytest.raises(ValueError):
        list(batch.rows(scores[:1]))


def test_streaming_consumes_lazily():
    consumed = []

    def stream():
        for i in range(100):
            consumed.append(i)
            yield frame(i)

    batches = ClipWindows(clip_frames=4, batch_size=2).batches(stream())
    first = next(batches)
    assert first.frame_index[-1, -1] == 7
    assert len(consumed) <= 9  # one batch read ahead at most, not the whole video
    assert not any(f.crop is not None for f in first.frames)  # no pixels kept twice


def test_input_shape_from_a_bundle():
    windows = ClipWindows.for_input_shape([2, 16, 3, 224, 224])
    assert (windows.batch_size, windows.clip_frames) == (2, 16)
    with pytest.raises(MDHRError, match="re-export"):
        ClipWindows.for_input_shape([1, 16, 3, 112, 112])
    with pytest.raises(MDHRError):
        ClipWindows(clip_frames=0)
