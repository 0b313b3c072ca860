"""The centre-only clip stage (``clip_centre``): a file run at hop 1 holds
its rows a few frames (``held_frames``) and scores each window but the first
and last for its centre frame alone, with the clip stage's bits, and the
frame stage a hop of frames per call, so its rows are those of a live
stream; live streams keep their latency and never hold a row; the card's
account decides whether the runtime uses the graph."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mdhr.errors import BundleError
from mdhr_runtime.backends.stages import MIN_SPEEDUP, StageRunner, centre_differences, clip_windows
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.pipeline import crops
from mdhr_runtime.windows.streams import FrameStream, WindowPlan, held_frames
from tests.support.footage import face_video
from tests.support.synthetic import Segment


@pytest.fixture(scope="module")
def gaps(tmp_path_factory, photo):
    """40 frames: a moving face, face-less stretches of 1 and 5 frames, and at the start."""
    video, _ = face_video(tmp_path_factory.mktemp("centre") / "gaps.mp4", photo,
                          (Segment("empty", 2), Segment("moving", 14), Segment("empty", 1), Segment("clean", 10),
                           Segment("empty", 5), Segment("clean", 8)))
    return list(crops(video))


def stream_rows(runner: StageRunner, frames, live: bool, hop: int = 1):
    stream = FrameStream(runner, WindowPlan.make("centred", runner.frames, hop), live)
    out, lags = [], []
    for frame in frames:
        got = stream.push(frame)
        lags += [stream.count - 1 - r.frame.index for r in got]
        out += got
    out += stream.finish()
    return [(r.frame.index, r.scores) for r in out], lags, stream


def check_bundle(bundle, frames) -> None:
    loaded = load_bundle(bundle)
    described = loaded.card.stages.clip_centre
    runner = StageRunner(loaded, providers=["CPUExecutionProvider"])
    T = runner.frames
    assert described.bit_identical and described.position == T // 2
    # the runtime uses it only where the export measured it faster (not for T = 4): the test uses it regardless
    assert runner.centre_position == (T // 2 if described.speedup is None or described.speedup >= MIN_SPEEDUP else None)
    runner.centre_position = T // 2
    # and the frame stage a hop per call, however fast the export measured it: held rows then wait a hop
    runner.batch_frames = loaded.card.stages.frame_batch.frames
    calls = []
    original = runner.clip_centre
    runner.clip_centre = lambda window: calls.append(1) or original(window)
    held, held_lags, stream = stream_rows(runner, frames, live=False)
    live, live_lags, live_stream = stream_rows(runner, frames, live=True)
    assert stream.hold == held_frames(runner) >= 1 and live_stream.hold == 0
    # every window asked first for its centre ran for it alone, but the last (it scores the frames after too)
    face, n, c = [f.crop is not None for f in frames], len(frames), T // 2
    first = next(p for p in range(n) if face[p])
    assert len(calls) == sum(face[p] and p - c + T < n for p in range(c + 1, n)) + (first == c) > 0
    assert [i for i, _ in held] == [i for i, _ in live] == list(range(len(frames)))
    for (_, a), (_, b) in zip(held, live):
        assert (a is None and b is None) or np.array_equal(a, b)
    # once the stream is T frames in, live rows come when their window is complete, held ones ``hold`` later
    plan = WindowPlan.make("centred", T, 1)
    assert max(live_lags[T:]) == plan.latency_frames and max(held_lags[T:]) == plan.latency_frames + stream.hold
    assert stream.windows_run == live_stream.windows_run  # each window once, either way
    windows = clip_windows(runner, [np.stack([f.crop for f in frames if f.crop is not None][:T])[None]])
    assert centre_differences(runner, windows) == []


def test_held_rows_at_the_centre_equal_the_clip_stages(disfa_short_bundle, gaps):
    check_bundle(disfa_short_bundle, gaps)


@pytest.mark.slow
def test_short_windows_get_no_centre_graph(disfa_model_bundle):
    """The exported DISFA ResNet-50, 4-frame windows: the centre's 5 frames are the whole window, so the export
    writes no centre-only graph (it would do the clip stage's work)."""
    card = load_bundle(disfa_model_bundle).card
    assert "clip_centre" not in card.artifacts and card.stages.clip_centre is None


@pytest.mark.slow
def test_held_rows_at_the_centre_equal_the_clip_stages_full_model(bp4d_bundle, gaps):
    """BP4D ResNet-50, 16-frame windows: the centre reads 5 frames of 16."""
    check_bundle(bp4d_bundle, gaps)


def test_other_hops_and_official_windows_never_hold(detector):
    runner = detector.stage_runner
    assert FrameStream(runner, WindowPlan.make("centred", runner.frames, 2), live=False).hold == 0
    assert FrameStream(runner, WindowPlan.make("centred", runner.frames, 1), live=False).hold == held_frames(runner)
    # one frame for the centre-only clip stage, a hop's worth for the frame stage on several frames a call
    assert held_frames(runner) == max(runner.batch_frames, 1) == 2


def edited(source, tmp_path, change):
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle)
    card = json.loads((bundle / "mdhr.json").read_text())
    change(card["stages"]["clip_centre"])
    (bundle / "mdhr.json").write_text(json.dumps(card))
    return load_bundle(bundle)


@pytest.mark.parametrize("speedup,used", [(None, True), (1.1, True), (3.0, True), (1.05, False), (0.7, False)])
def test_the_runtime_uses_clip_centre_only_where_the_export_measured_it_faster(disfa_short_bundle, tmp_path,
                                                                              speedup, used):
    loaded = edited(disfa_short_bundle, tmp_path, lambda account: account.update(speedup=speedup))
    runner = StageRunner(loaded, providers=["CPUExecutionProvider"])
    try:
        assert runner.centre_position == (loaded.frames // 2 if used else None)
    finally:
        runner.close()


def test_a_card_naming_another_centre_is_refused(disfa_short_bundle, tmp_path):
    loaded = edited(disfa_short_bundle, tmp_path, lambda account: account.update(position=1))
    with pytest.raises(BundleError, match="centre"):
        StageRunner(loaded, providers=["CPUExecutionProvider"])


def test_a_held_stream_runs_the_frame_stage_a_hop_of_frames_per_call(disfa_short_bundle, gaps):
    runner = StageRunner(load_bundle(disfa_short_bundle), providers=["CPUExecutionProvider"])
    sizes = []
    original = runner.run_frames
    runner.run_frames = lambda crops, previous: sizes.append(len(crops)) or original(crops, previous)
    held, _, _ = stream_rows(runner, gaps, live=False)
    held_sizes, sizes[:] = list(sizes), []
    live, _, _ = stream_rows(runner, gaps, live=True)
    assert runner.batch_frames == 2 and held_sizes.count(2) > len(gaps) // 4 and sizes.count(2) < held_sizes.count(2)
    assert sum(held_sizes) == sum(sizes) == sum(f.crop is not None for f in gaps)  # each face once, either way
    assert all((a is None and b is None) or np.array_equal(a, b) for (_, a), (_, b) in zip(held, live))


def test_a_bundle_without_clip_centre_runs_the_clip_stage(disfa_short_bundle, tmp_path, gaps):
    bundle = tmp_path / "bundle"
    shutil.copytree(disfa_short_bundle, bundle)
    card = json.loads((bundle / "mdhr.json").read_text())
    del card["stages"]["clip_centre"]
    card["artifacts"]["clip_centre"] = None
    (bundle / "mdhr.json").write_text(json.dumps(card))
    (bundle / "clip_centre.onnx").unlink()
    runner = StageRunner(load_bundle(bundle), providers=["CPUExecutionProvider"])
    assert runner.centre_position is None and held_frames(runner) == runner.batch_frames
    held, _, stream = stream_rows(runner, gaps, live=False)
    reference, _, _ = stream_rows(StageRunner(load_bundle(disfa_short_bundle), providers=["CPUExecutionProvider"]),
                                  gaps, live=True)
    assert all((a is None and b is None) or np.array_equal(a, b) for (_, a), (_, b) in zip(held, reference))
    with pytest.raises(BundleError, match="no centre-only clip stage"):
        runner.clip_centre(clip_windows(runner, [np.stack([f.crop for f in gaps if f.crop is not None][:4])[None]])[0])
