"""What every mdhr-* command does with errors: one clear line and a
non-zero exit; the traceback only with --verbose.

Exit codes (docs/errors.md lists the same, with the cases behind them):
  0   success
  1   a bug (internal error): please report it
  2   a problem with the input, an option or the machine, said in one line
  3   mdhr-parity: a backend broke tolerance
  4   mdhr-run: the input was not read to its end (a cut or damaged video,
      judged from its presentation timeline); the frames read were written
      and the JSON says complete: false and why
  5   mdhr-batch: some videos failed or were partial (summary.csv says which)
  130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM): nothing written
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import click

from mdhr.errors import MDHRError
from mdhr_runtime.sources.live import quiet_ffmpeg

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INCOMPLETE_INPUT = 4
EXIT_SOME_FAILED = 5
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


# Modules of the optional extras, and the extra that installs each.  The
# torch-free base install runs bundles; exporting and PyTorch benchmarks need
# the export extra, TensorRT the gpu extra.
OPTIONAL_MODULES = {"torch": "export", "onnx": "export", "onnxscript": "export", "onnxslim": "export",
                    "tensorrt": "gpu", "cuda": "gpu"}


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so staging is cleaned up on the
    way out (the default action would kill the process where it stands)."""


class _Signals:
    # Some libraries wrap whatever interrupts them (torch.export raises its
    # own error "from" it), so the signal is remembered, not only raised.
    received: int | None = None


def _interrupt(signum, frame):
    _Signals.received = signum
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _unless_terminated(work: Callable[[], int | None]) -> int | None:
    try:
        return work()
    except Exception:
        # whatever a signal turned into on its way up is still that signal
        if _Signals.received == signal.SIGINT:
            raise KeyboardInterrupt() from None
        if _Signals.received == signal.SIGTERM:
            raise Terminated() from None
        raise


def run_reporting_errors(work: Callable[[], int | None], verbose: bool, flags: dict[str, str] | None = None) -> None:
    quiet_ffmpeg(verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _interrupt) for s in handled} if in_main_thread else {}
    _Signals.received = None
    try:
        code = _unless_terminated(work)
    except MDHRError as e:
        if verbose:
            raise
        click.echo(f"error: {e.phrased(flags)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except ModuleNotFoundError as e:
        extra = OPTIONAL_MODULES.get((e.name or "").partition(".")[0])
        if extra is None or verbose:
            raise
        click.echo(f"error: this command needs {e.name}, which is not installed: pip install "
                   f"'mdhr-toolkit[{extra}]' (from the source tree: pip install -e '.[{extra}]')", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted; nothing was written", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        click.echo("terminated; nothing was written", err=True)
        sys.exit(EXIT_TERMINATED)
    except Exception as e:  # a bug: say so briefly unless asked for details
        if verbose:
            raise
        click.echo(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                   "(run again with --verbose for the traceback, and please report it)", err=True)
        sys.exit(EXIT_BUG)
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    sys.exit(code or 0)


def say(line: str) -> None:
    """A progress or notice line, on stderr (stdout holds results)."""
    click.echo(line, err=True)


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Show progress details and full tracebacks.")
