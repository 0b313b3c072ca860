"""The commands' entry points.  Each stops cleanly on SIGINT or SIGTERM from
its first moment: the command's own modules (numpy, OpenCV, ONNX Runtime,
torch) take seconds to import, and a signal then would otherwise end the
process with Python's traceback (SIGINT) or the bare signal (SIGTERM)
instead of exit 130 or 143.  Nothing is written before the command's own
handling (``cli.common.run_reporting_errors``) takes over."""
from __future__ import annotations

import importlib
import os
import signal
import sys


def _stop(signum, frame):
    # os._exit, not SystemExit: the signal may land inside the import of a
    # C++ library (torch, ONNX Runtime), whose half-made state the
    # interpreter's teardown would then destroy and abort on (exit -6)
    sys.stderr.write(("interrupted" if signum == signal.SIGINT else "terminated") + "; nothing was written\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def _launch(module: str, name: str):
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stop)
    return getattr(importlib.import_module(module), name)()


def run():
    return _launch("mdhr_runtime.cli.run", "main")


def batch():
    return _launch("mdhr_runtime.cli.batch", "main")


def report():
    return _launch("mdhr_runtime.cli.report", "main")


def export():
    return _launch("mdhr_export.cli", "main")


def build():
    return _launch("mdhr_export.cli", "build_main")


def triton():
    return _launch("mdhr_export.cli", "triton_main")


def live():
    return _launch("mdhr_runtime.cli.live_page", "main")


def bench():
    return _launch("mdhr_bench.cli", "bench_main")


def parity():
    return _launch("mdhr_bench.cli", "parity_main")


def demo():
    return _launch("mdhr_demo.cli", "main")
