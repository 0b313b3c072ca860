"""What every mdhr-* command does with errors: one clear line and a
non-zero exit; the traceback only with --verbose.

Exit codes (the README's error section lists the same):
  0   success
  1   a bug (internal error): please report it
  2   a problem with the input, an option or the machine, said in one line
  3   mdhr-parity: a backend broke tolerance
  4   mdhr-run: the input ended early (truncated or damaged video); the
      frames read were written and the JSON says complete: false
  5   mdhr-batch: some videos failed or were partial (summary.csv says which)
  130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM): nothing written
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

import click

from mdhr.errors import MDHRError

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INCOMPLETE_INPUT = 4
EXIT_SOME_FAILED = 5
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so staging is cleaned up on the
    way out (the default action would kill the process where it stands)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def quiet_ffmpeg(verbose: bool) -> None:
    """FFmpeg (inside OpenCV) prints its own decoder complaints to stderr;
    the commands say what matters in one line, so silence it unless
    --verbose.  OpenCV reads the setting once, when it first opens a video."""
    if not verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def run_reporting_errors(work: Callable[[], int | None], verbose: bool) -> None:
    quiet_ffmpeg(verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        code = work()
    except MDHRError as e:
        if verbose:
            raise
        click.echo(f"error: {e}", err=True)
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
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    sys.exit(code or 0)


def say(line: str) -> None:
    """A progress or notice line, on stderr (stdout holds results)."""
    click.echo(line, err=True)


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Show progress details and full tracebacks.")
