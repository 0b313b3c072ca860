"""Steps a signal must not cut in two."""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def signals_held():
    """SIGINT and SIGTERM wait while the block runs and are delivered at its
    end (in the main thread; elsewhere the block runs as it is): for short
    steps whose halves are worse than either whole, such as a summary row
    and its CSV, or a child process started but not yet told its work."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
