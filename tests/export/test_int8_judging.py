"""The INT8 search stops judging a candidate once it fails for certain:
its disagreements on the clips judged so far already exceed what the gate
allows over all the judging clips."""
from __future__ import annotations

import numpy as np
import pytest

from mdhr_export.int8_search import fails_for_certain

CLIPS, FRAMES, AUS = 4, 16, 12


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    return {"au_scores": rng.uniform(0.45, 0.55, (CLIPS, FRAMES, AUS)).astype(np.float32)}


def flipped(scores: np.ndarray, count: int, cut: np.ndarray) -> np.ndarray:
    """``scores`` with ``count`` decisions at the AU medians ``cut`` turned over."""
    out = scores.reshape(-1, AUS).copy()
    for k in range(count):
        frame, au = divmod(k, AUS)
        out[frame, au] = cut[au] - 0.01 if out[frame, au] >= cut[au] else cut[au] + 0.01
    return out.reshape(scores.shape)


@pytest.mark.parametrize("min_agreement", [0.99, 0.95])
def test_a_candidate_fails_for_certain_only_past_the_gates_allowance(reference, min_agreement):
    allowed = int((1 - min_agreement) * CLIPS * FRAMES * AUS)
    first = reference["au_scores"][:1]
    cut = np.median(reference["au_scores"].reshape(-1, AUS), axis=0)
    threshold = 2.0  # no decision at the threshold differs: the medians decide
    for count in range(0, allowed + 3):
        judged = [{"au_scores": flipped(first, count, cut)}]
        assert fails_for_certain(reference, judged, threshold, min_agreement) == (count > allowed), count


def test_an_identical_candidate_never_fails(reference):
    for seen in range(1, CLIPS + 1):
        judged = [{"au_scores": reference["au_scores"][k:k + 1]} for k in range(seen)]
        assert not fails_for_certain(reference, judged, 0.5, 0.99)


def test_a_candidate_turned_over_fails_on_its_first_clip(reference):
    judged = [{"au_scores": 1.0 - reference["au_scores"][:1]}]  # every decision turned over
    assert fails_for_certain(reference, judged, 0.5, 0.99)


def test_the_speedup_is_fp32_time_over_the_candidates_in_alternating_runs():
    import time

    from mdhr_export.int8_search import speedup_over_fp32

    calls = []

    class Slow:  # stands for ONNX Runtime fp32: 20 ms a call
        def infer(self, batch):
            calls.append("fp32")
            time.sleep(0.02)

    class Fast:  # stands for the compiled candidate: 5 ms a call
        def infer(self, feeds):
            calls.append("candidate")
            time.sleep(0.005)

    speedup = speedup_over_fp32(Slow(), Fast(), np.zeros(1), rounds=3)
    assert calls == ["fp32", "candidate"] * 3
    assert 2.0 < speedup < 6.0
