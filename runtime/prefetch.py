"""Work ahead on a thread of its own: ``prefetched(items, depth)`` yields
what ``items`` yields, in order, while a reader thread produces up to
``depth`` items ahead.  The scoring loop reads, tracks and crops frames
this way while the model runs (decoding, detection and ONNX Runtime all
leave the GIL while they compute).

Contract: the same items as iterating ``items`` directly, then an
exception raised by ``items`` at the point where it was raised; leaving
the loop early (``close``, an exception in the consumer) stops the reader
after the item it is producing, closes ``items`` there and joins it.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

Item = TypeVar("Item")
_POLL_S = 0.1  # how often a reader blocked on a full queue checks whether the consumer left


def prefetched(items: Iterable[Item], depth: int) -> Iterator[Item]:
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    reader = threading.Thread(target=_produce, args=(items, ready, stop), name="mdhr-reader", daemon=True)
    reader.start()
    try:
        while True:
            more, item = ready.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        reader.join()


def _produce(items: Iterable, ready: queue.Queue, stop: threading.Event) -> None:
    iterator = iter(items)
    try:
        for item in iterator:
            if not _put(ready, (True, item), stop):
                return
        _put(ready, (False, None), stop)
    except BaseException as error:  # handed to the consumer, which raises it
        _put(ready, (False, error), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _put(ready: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Put ``entry`` unless the consumer has left; whether it was put."""
    while not stop.is_set():
        try:
            ready.put(entry, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
