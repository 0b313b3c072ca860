"""Window bookkeeping and the staged streaming scorer on a real bundle:
every frame exactly one row, first and last frames, videos shorter than a
window, face-less stretches, and bounded memory over a long stream."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime.backends.stages import StageRunner
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.pipeline import crops
from mdhr_runtime.windows.streams import FrameStream, WindowPlan
from tests.support.synthetic import FootageMaker, Segment, write_video


# ------------------------------------------------------------ pure bookkeeping
def test_official_windows_are_the_papers():
    plan = WindowPlan.make("official", 16)
    assert [plan.window_of(t) for t in (0, 15, 16, 31, 32)] == [0, 0, 16, 16, 32]
    assert plan.final_window(35, 37) == 32 and plan.latency_frames == 15


@pytest.mark.parametrize("hop", [1, 2, 5, 6, 8, 16])
def test_centred_windows_put_each_frame_near_the_middle(hop):
    plan = WindowPlan.make("centred", 16, hop)
    for t in range(200):
        start = plan.window_of(t)
        assert start % hop == 0 and 0 <= start <= t < start + 16
        centre = start + 7.5
        # no other regular window has its centre nearer
        others = [s for s in range(0, t + 1, hop) if s != start and s + 16 > t]
        assert all(abs(t - centre) <= abs(t - (s + 7.5)) for s in others)
        if t >= 16:  # past the start, the position is within hop/2 of the centre
            assert abs(t - centre) <= hop / 2
            assert start + 15 - t <= plan.latency_frames
    assert WindowPlan.make("centred", 16, 8).latency_frames == 11


def test_last_frames_take_the_last_window_and_short_videos_one_padded():
    plan = WindowPlan.make("centred", 16, 8)
    assert plan.final_window(20, 21) == 5
    assert plan.final_window(3, 5) == 0
    assert WindowPlan.make("official", 16).final_window(20, 21) == 16


def test_bad_window_options_are_refused():
    with pytest.raises(MDHRError, match="hop"):
        WindowPlan.make("centred", 16, 0)
    with pytest.raises(MDHRError, match="hop"):
        WindowPlan.make("centred", 16, 17)
    with pytest.raises(MDHRError, match="centred windows only"):
        WindowPlan.make("official", 16, 8)
    with pytest.raises(MDHRError, match="window mode"):
        WindowPlan.make("sliding", 16)


# ------------------------------------------------------------ on a real bundle
@pytest.fixture(scope="module")
def cropped(tmp_path_factory, photo):
    """21 frames: a moving face, 6 face-less frames, the face again; cropped
    by the runtime (MTCNN, tracking)."""
    made = list(FootageMaker(photo).frames((Segment("empty", 2), Segment("moving", 9), Segment("empty", 6),
                                            Segment("clean", 4))))
    video = tmp_path_factory.mktemp("windows") / "clip.mp4"
    write_video(video, [f.rgb for f in made])
    frames = list(crops(video))
    assert [f.crop is not None for f in frames] == [f.truth is not None for f in made]
    return video, frames


class CountingRunner(StageRunner):
    """The real stage runner, counting frame stage runs."""

    frame_runs = 0

    def frame(self, crop, previous):
        self.frame_runs += 1
        return super().frame(crop, previous)

    def _run_batch(self, crops, previous):  # a hop of frames in one call
        self.frame_runs += len(crops)
        return super()._run_batch(crops, previous)


def filled(frames: list[CroppedFrame]) -> np.ndarray:
    """Every frame's crop as the official path fills face-less frames: the
    last face crop, or before the first face the first face crop."""
    first = next(f.crop for f in frames if f.crop is not None)
    out, last = [], first
    for f in frames:
        last = f.crop if f.crop is not None else last
        out.append(last)
    return np.stack(out)


def stream_rows(runner, plan, frames):
    stream = FrameStream(runner, plan)
    rows = []
    for f in frames:
        rows += stream.push(f)
        assert len(stream.cache) <= plan.frames and len(stream.pending) <= plan.frames
    return rows + stream.finish(), stream


def test_staged_official_windows_equal_the_whole_model(detector, cropped):
    video, frames = cropped
    rows, _ = stream_rows(detector.stage_runner, WindowPlan.make("official", 4), frames)
    table = detector.predict_video(video, windows="official")
    assert [r.frame.index for r in rows] == [row.index for row in table.rows] == list(range(len(frames)))
    for ours, single in zip(rows, table.rows):
        if single.scores is None:
            assert ours.scores is None
        else:
            np.testing.assert_allclose(ours.scores, single.scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hop", [1, 2, 3])
def test_centred_rows_equal_the_whole_model_on_each_frames_window(detector, disfa_short_bundle, cropped, hop):
    _, frames = cropped
    runner = CountingRunner(detector.bundle)
    plan = WindowPlan.make("centred", 4, hop)
    rows, stream = stream_rows(runner, plan, frames)
    assert [r.frame.index for r in rows] == list(range(len(frames)))
    faces = [f.crop is not None for f in frames]
    assert [r.scores is not None for r in rows] == faces
    # the frame stage ran once per face frame (face-less frames reuse), whatever the hop
    assert runner.frame_runs == sum(faces)
    clips = filled(frames)
    starts = set()
    for t, row in enumerate(rows):
        if row.scores is None:
            continue
        start = plan.window_of(t) if plan.window_of(t) + 4 <= len(frames) else len(frames) - 4
        starts.add(start)
        expected = detector.predict_clips(clips[None, start:start + 4])[0, t - start]
        np.testing.assert_allclose(row.scores, expected, rtol=0, atol=1e-5)
    assert stream.windows_run == len(starts)
    runner.close()


def test_video_shorter_than_a_window(detector, cropped):
    video, frames = cropped
    short = frames[2:5]  # 3 face frames, T = 4
    for mode in ("official", "centred"):
        rows, _ = stream_rows(detector.stage_runner, WindowPlan.make(mode, 4), short)
        padded = np.concatenate([filled(short), filled(short)[-1:]])
        expected = detector.predict_clips(padded[None])[0]
        assert len(rows) == 3
        for t, row in enumerate(rows):
            np.testing.assert_allclose(row.scores, expected[t], rtol=0, atol=1e-5)


def test_predict_video_centred_records_the_mode(detector, cropped):
    video, frames = cropped
    report = detector.profile_video(video, windows="centred", hop=2)
    assert report["windows"] == {"mode": "centred", "frames": 4, "hop": 2, "latency_frames": 2}
    assert report["frames"] == len(frames)


def test_memory_stays_bounded_over_a_long_stream(detector, cropped):
    """A long stream of face and face-less frames: the cache never holds more
    than one window, and its size stops growing after the first window."""
    _, frames = cropped
    face = next(f for f in frames if f.crop is not None)
    stream = detector.stream("centred", hop=2)
    rng = np.random.default_rng(0)
    sizes, emitted = [], 0
    for i in range(120):
        has_face = i % 10 < 7
        crop = (face.crop + 0.05 * rng.standard_normal(face.crop.shape, dtype=np.float32)) if has_face else None
        frame = dataclasses.replace(face, index=i, crop=crop,
                                    face=face.face if has_face else FaceResult.missing())
        emitted += len(stream.push(frame))
        assert len(stream.cache) <= 4 and len(stream.pending) <= 4
        sizes.append(stream.cached_bytes)
    emitted += len(stream.finish())
    assert emitted == 120
    assert max(sizes[10:]) == sizes[10]
    assert sizes[10] < 5 * 1_705_984 + 7 * 1024 * 1024  # one window of features + one frame's taps
