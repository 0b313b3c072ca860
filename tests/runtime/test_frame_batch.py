"""The frame stage a hop of frames per call (``frame_batch``) gives every
frame's features, and so every row, bit for bit as one frame per call; the
export keeps the graph only where that holds and says so in the card."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from mdhr_runtime.backends.stages import MIN_SPEEDUP, StageRunner, batch_differences
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.pipeline import crops
from mdhr_runtime.windows.streams import FrameStream, WindowPlan
from tests.support.footage import face_video
from tests.support.synthetic import Segment


@pytest.fixture(scope="module")
def gaps(tmp_path_factory, photo):
    """30 frames: a moving face, face-less stretches of 1 and 5 frames."""
    video, _ = face_video(tmp_path_factory.mktemp("gaps") / "gaps.mp4", photo,
                          (Segment("empty", 3), Segment("moving", 9), Segment("empty", 1), Segment("clean", 8),
                           Segment("empty", 5), Segment("clean", 4)))
    return list(crops(video))


def one_per_call(bundle) -> StageRunner:
    runner = StageRunner(load_bundle(bundle), providers=["CPUExecutionProvider"])
    runner.batch_frames = 1  # the reference: the frame stage graph, one frame per call
    return runner


def rows(runner: StageRunner, plan: WindowPlan, frames) -> list[tuple[int, np.ndarray | None]]:
    stream = FrameStream(runner, plan)
    out = [r for frame in frames for r in stream.push(frame)] + stream.finish()
    return [(r.frame.index, r.scores) for r in out]


def check_bundle(bundle, frames, hops) -> None:
    described = load_bundle(bundle).card.stages.frame_batch
    assert described.bit_identical is True
    batched = StageRunner(load_bundle(bundle), providers=["CPUExecutionProvider"])
    reference = one_per_call(bundle)
    T = batched.frames
    # the runtime calls frame_batch only where the export measured it faster; the test calls it regardless
    faster = described.speedup is None or described.speedup >= MIN_SPEEDUP
    assert batched.batch_frames == (described.frames if faster else 1)
    batched.batch_frames = described.frames
    assert described.frames == T // 2 > 1
    face_crops = [f.crop for f in frames if f.crop is not None]
    assert batch_differences(batched, face_crops) == []
    for hop in hops:
        plan = WindowPlan.make("centred", T, hop)
        got, want = rows(batched, plan, frames), rows(reference, plan, frames)
        assert [i for i, _ in got] == [i for i, _ in want] == list(range(len(frames)))
        for (_, a), (_, b) in zip(got, want):
            assert (a is None and b is None) or np.array_equal(a, b)
    official = WindowPlan.make("official", T)
    assert all(np.array_equal(a, b) if a is not None else b is None
               for (_, a), (_, b) in zip(rows(batched, official, frames), rows(reference, official, frames)))


def test_hop_batches_equal_one_frame_per_call(disfa_short_bundle, gaps):
    """The tiny bundle's graphs (the stages' contract)."""
    check_bundle(disfa_short_bundle, gaps, hops=(1, 2, 3, 4))


@pytest.mark.slow
def test_hop_batches_equal_one_frame_per_call_exported_model(disfa_model_bundle, gaps):
    """The exported DISFA ResNet-50, 4-frame windows: 2 frames per call (hop 1, a file run's held frames:
    tests/runtime/test_clip_centre.py)."""
    check_bundle(disfa_model_bundle, gaps, hops=(2, 3))


@pytest.mark.slow
def test_hop_batches_equal_one_frame_per_call_full_model(bp4d_bundle, gaps):
    """BP4D ResNet-50, 16-frame windows: 8 frames per frame-stage call (hop 1: test_clip_centre.py)."""
    check_bundle(bp4d_bundle, gaps, hops=(8,))


def test_the_queue_is_bounded_and_runs_in_hops(detector, gaps):
    """Crops wait at most until a window needs them (or a call's worth is
    queued), never more than T of them."""
    runner = detector.stage_runner
    calls = []
    original = runner.run_frames
    stream = FrameStream(runner, WindowPlan.make("centred", runner.frames, 2))
    try:
        runner.run_frames = lambda crops, previous: calls.append(len(crops)) or original(crops, previous)
        long = [dataclasses.replace(f, index=i) for i, f in enumerate(itertools.islice(itertools.cycle(gaps), 90))]
        for frame in long:
            stream.push(frame)
            assert len(stream._queued) < runner.frames
            assert stream.queued_bytes <= runner.frames * 3 * 224 * 224 * 4
        stream.finish()
    finally:
        del runner.run_frames
    assert max(calls) <= runner.batch_frames and calls.count(runner.batch_frames) > len(calls) // 3
    assert stream.frames_run == sum(f.crop is not None for f in long)


@pytest.mark.parametrize("speedup,calls_a_hop", [(None, True), (1.1, True), (2.5, True), (1.03, False), (0.8, False)])
def test_the_runtime_calls_frame_batch_only_where_the_export_measured_it_faster(disfa_short_bundle, tmp_path,
                                                                               speedup, calls_a_hop):
    import json
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(disfa_short_bundle, bundle)
    card = json.loads((bundle / "mdhr.json").read_text())
    card["stages"]["frame_batch"].pop("speedup", None)
    if speedup is not None:
        card["stages"]["frame_batch"]["speedup"] = speedup
    (bundle / "mdhr.json").write_text(json.dumps(card))
    loaded = load_bundle(bundle)
    assert loaded.card.stages.frame_batch.speedup == speedup
    runner = StageRunner(loaded, providers=["CPUExecutionProvider"])
    try:
        assert runner.batch_frames == (loaded.card.stages.frame_batch.frames if calls_a_hop else 1)
    finally:
        runner.close()
