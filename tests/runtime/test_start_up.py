"""What a short run's start-up rests on: the still motion costs one frame
stage run, not two, with the same bits; the window stream's graphs open on a
thread of their own while the run reads and detects its first frames, and
an error while opening reaches the caller as it was raised."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from mdhr.errors import BundleError
from mdhr_runtime.backends.sessions import Started
from mdhr_runtime.backends.stages import StageRunner
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.pipeline import Scoring
from mdhr_runtime.sources.frames import FrameSource
from tests.support.footage import face_video
from tests.support.synthetic import Segment


def counted(runner: StageRunner) -> list[int]:
    """Counts the frame stage graph's runs (the real session runs them)."""
    calls, session = [], runner.frame_session
    original = session.run
    session.run = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    return calls


def check_still(bundle) -> None:
    loaded = load_bundle(bundle)
    rng = np.random.default_rng(3)
    for _ in range(3):
        crop = rng.standard_normal((3, 224, 224), dtype=np.float32)
        from_crop, from_zero = (StageRunner(loaded, providers=["CPUExecutionProvider"]) for _ in range(2))
        runs = counted(from_crop)
        features, _ = from_crop.frame(crop, None)
        assert len(runs) == 2  # the crop, then the crop after itself
        assert np.array_equal(features.dynamics, from_zero.still_dynamics())
        assert from_crop.still_dynamics() is features.dynamics  # computed once
        assert len(runs) == 2


def test_the_still_motion_from_the_first_crop_is_the_zero_images(disfa_short_bundle):
    check_still(disfa_short_bundle)


@pytest.mark.slow
def test_the_still_motion_from_the_first_crop_is_the_zero_images_exported_model(disfa_model_bundle):
    check_still(disfa_model_bundle)


def test_started_gives_the_value_or_the_error_every_time():
    go = threading.Event()
    started = Started(lambda: go.wait(5) and 42)
    assert not go.is_set()  # the caller went on while it runs
    go.set()
    assert started.result() == 42 == started.result()
    failing = Started(lambda: 1 / 0)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            failing.result()


class Gated:
    """A real detector whose window stream opens only once ``opened`` is set."""

    def __init__(self, detector, opened: threading.Event):
        self.detector, self.opened = detector, opened
        self.bundle, self.threshold = detector.bundle, detector.threshold

    def window_scorer(self, plan, live=False):
        assert self.opened.wait(10), "the test never let the stream open"
        return self.detector.window_scorer(plan, live)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory, photo):
    video, _ = face_video(tmp_path_factory.mktemp("start") / "start.mp4", photo,
                          (Segment("clean", 6), Segment("empty", 2), Segment("moving", 5)))
    return video


def test_the_stream_opens_while_the_run_reads_and_detects(detector, short_video):
    expected = detector.scoring().run(FrameSource(short_video)).score_matrix()
    opened = threading.Event()
    gated = Scoring(Gated(detector, opened), detector.scoring().options)  # returns before the stream can open
    prepared = [gated._prepare(frame, gated.clock) for frame in FrameSource(short_video)]
    assert sum(p.cropped.face.success for p in prepared) == 11 and not opened.is_set()  # read, detected meanwhile
    opened.set()
    for one in prepared:
        gated._score(one)
    gated.finish()
    assert np.array_equal(gated.table.score_matrix(), expected, equal_nan=True)


def test_an_error_while_opening_reaches_the_run(detector, short_video):
    class Broken(Gated):
        def window_scorer(self, plan, live=False):
            raise BundleError("the stage graphs cannot open: export the bundle again")

    scoring = Scoring(Broken(detector, threading.Event()), detector.scoring().options)
    with pytest.raises(BundleError, match="cannot open"):
        scoring.run(FrameSource(short_video))
