"""The reduced-precision searches' choice (``int8_search.choose``) times
only what it needs and ships what timing every candidate would: the
fastest passing one, else the most faithful at the minimum speed-up (else
the fastest), marked failing."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr_export.int8_search import SearchSettings, choose

MIN_SPEEDUP = 1.2


def old_rule(candidates: list[dict]) -> dict:
    """Every candidate timed, then chosen."""
    passing = [c for c in candidates if c["passed_agreement"] and c["speed"] >= MIN_SPEEDUP]
    if passing:
        return max(passing, key=lambda c: c["speed"])
    fast = [c for c in candidates if c["speed"] >= MIN_SPEEDUP]
    if fast:
        return max(fast, key=lambda c: (c["score"], c["speed"]))
    return max(candidates, key=lambda c: c["speed"])


candidate_lists = st.lists(st.tuples(st.booleans(), st.floats(0.1, 3.0), st.floats(0.0, 1.0)), min_size=1,
                           max_size=12, unique_by=(lambda t: t[1], lambda t: t[2]))


@settings(max_examples=300, deadline=None)
@given(candidate_lists)
def test_judged_first_timed_when_needed_same_choice(specs):
    candidates = [{"passed_agreement": ok, "speed": speed, "score": score} for ok, speed, score in specs]
    timed = []

    def time(entry):
        timed.append(entry["id"])
        entry["speedup_vs_onnxruntime"] = entry["speed"]
        entry["passed"] = entry["passed_agreement"] and entry["speed"] >= MIN_SPEEDUP

    tried = []
    for i, c in enumerate(candidates):  # as the search does: time those that pass agreement
        entry = {"id": i, **c, "speedup_vs_onnxruntime": None, "passed": False}
        if entry["passed_agreement"]:
            time(entry)
        tried.append(entry)
    judged_timed = len(timed)
    chosen = choose(tried, SearchSettings(min_speedup=MIN_SPEEDUP), time)
    assert chosen["id"] == candidates.index(old_rule(candidates))
    assert chosen["speedup_vs_onnxruntime"] is not None
    if any(c["passed_agreement"] and c["speed"] >= MIN_SPEEDUP for c in candidates):
        assert len(timed) == judged_timed  # a passing one exists: no failing candidate was timed
    assert len(timed) == len(set(timed))  # none timed twice
