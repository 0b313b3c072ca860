"""The reader thread of the scoring loop (``mdhr_runtime.prefetch``): the
same items in the same order, a producer's exception where it happened, a
bounded read-ahead, and a clean stop when the consumer leaves early."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr_runtime.prefetch import prefetched


class Source:
    """A generator-like source that counts what it produced and whether it
    was closed, and can fail at one position."""

    def __init__(self, items, fail_at=None):
        self.items, self.fail_at = items, fail_at
        self.produced, self.closed = 0, False

    def __iter__(self):
        try:
            for i, item in enumerate(self.items):
                if i == self.fail_at:
                    raise ValueError(f"bad item {i}")
                self.produced += 1
                yield item
        finally:
            self.closed = True


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mdhr-reader"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers()), st.integers(min_value=1, max_value=6))
def test_same_items_in_order(items, depth):
    source = Source(items)
    assert list(prefetched(source, depth)) == items
    assert source.closed and not readers()


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=25), st.integers(1, 4))
def test_an_error_comes_where_it_was_raised(length, fail_at, depth):
    source = Source(list(range(length)), fail_at)
    got = []
    if fail_at < length:
        with pytest.raises(ValueError, match=f"bad item {fail_at}"):
            for item in prefetched(source, depth):
                got.append(item)
        assert got == list(range(fail_at))
    else:
        assert list(prefetched(source, depth)) == list(range(length))
    assert source.closed and not readers()


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=5))
def test_leaving_early_stops_the_reader_within_its_depth(taken, depth):
    source = Source(range(100))
    items = prefetched(source, depth)
    for _, _ in zip(range(taken), items):
        pass
    items.close()
    assert source.closed and not readers()
    # at most the queue's depth, the item in hand and one blocked on the full queue ahead
    assert source.produced <= taken + depth + 2


def test_nothing_is_read_before_the_first_item_is_asked_for():
    source = Source(range(10))
    prefetched(source, 3).close()
    assert source.produced == 0 and not readers()


def test_a_consumer_error_stops_the_reader():
    source = Source(range(100))
    with pytest.raises(RuntimeError):
        for item in prefetched(source, 3):
            if item == 5:
                raise RuntimeError("consumer failed")
    assert source.closed and not readers()


@pytest.mark.parametrize("depth", [0, -1])
def test_depth_must_be_positive(depth):
    with pytest.raises(ValueError, match="depth"):
        next(prefetched([1], depth))
