"""Where the time of a video goes: decode, detect, preprocess, model, and
the rows' quality (landmarks, head pose and flags)."""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

STAGES = ("decode", "detect", "preprocess", "model", "quality")
Item = TypeVar("Item")


class StageClock:
    """Seconds spent in each named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, other: "StageClock") -> None:
        """Book ``other``'s seconds here too (a reader thread's clock)."""
        for name, seconds in other.seconds.items():
            self.seconds[name] += seconds

    def total(self) -> float:
        return sum(self.seconds.values())

    def timed(self, items: Iterable[Item], name: str) -> Iterator[Item]:
        """``items`` with the time spent producing each one booked to
        ``name``, less what nested stages already booked meanwhile."""
        iterator = iter(items)
        while True:
            start, booked = time.perf_counter(), self.total()
            item = next(iterator, None)
            self.seconds[name] += time.perf_counter() - start - (self.total() - booked)
            if item is None:
                return
            yield item

    def report(self, frames: int, wall: float) -> dict:
        return {name: {"seconds": round(self.seconds[name], 4),
                       "ms_per_frame": round(1e3 * self.seconds[name] / max(frames, 1), 3),
                       "share": round(self.seconds[name] / wall, 4) if wall else None}
                for name in STAGES}


def speedup(reference: Callable[[], object], candidate: Callable[[], object], rounds: int = 3,
            warm_up: bool = True) -> float:
    """How many times faster ``candidate()`` runs than ``reference()``: the
    ratio of their median times over ``rounds`` alternating runs (so a
    change of load hits both alike), after one run of each to warm up."""
    reference_s: list[float] = []
    candidate_s: list[float] = []
    for step in range(rounds + warm_up):
        for work, runs in ((reference, reference_s), (candidate, candidate_s)):
            start = time.perf_counter()
            work()
            if step >= warm_up:
                runs.append(time.perf_counter() - start)
    return float(statistics.median(reference_s) / statistics.median(candidate_s))
