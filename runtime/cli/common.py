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

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Mapping, Sequence

import click

from mdhr.errors import MDHRError
from mdhr_runtime.backends.sessions import stop_model_calls
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
                    "tensorrt": "gpu", "cuda": "gpu", "aiohttp": "live", "pylsl": "lsl"}


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


class _SignalWatcher:
    """Stops model calls the moment a signal arrives.  Python runs its
    signal handlers in the main thread between bytecodes, so a handler
    waits while ONNX Runtime holds that thread in one long call (seconds
    for a clip of the full model).  Python's C-level handler also writes the
    signal's number to a wakeup pipe; this thread reads it, records the
    signal and sets ONNX Runtime's terminate flag, so the call returns at
    once and the handler runs."""

    def __init__(self):
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        self.previous = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="mdhr-signal-watcher", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self.read, 16)
            except OSError:
                data = b""
            if not data:
                os.close(self.read)
                return
            numbers = [n for n in data if n in (signal.SIGINT, signal.SIGTERM)]
            if numbers:
                _Signals.received = _Signals.received or numbers[0]
                stop_model_calls()

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous)
        os.close(self.write)  # the watcher's read then ends


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


def _exit_now(code: int) -> None:
    """End a process stopped by a signal without the interpreter's teardown.
    Its outputs' staging is already removed (the exception unwound through
    it); what may still run are C++ threads of ONNX Runtime or OpenVINO (a
    session being built in a helper thread, a cancelled request's workers),
    and tearing those libraries down under them aborts the process (exit
    134, "terminate called without an active exception")."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def command_flags(command: click.Command, aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """How ``command`` names each library parameter (for MDHRError.phrased):
    an option's parameter by its first flag, an argument by its metavar, and
    ``aliases`` for the library's names that differ from the command's."""
    named = {p.name: p.opts[0] if isinstance(p, click.Option) else (p.metavar or p.name.upper()).rstrip(".")
             for p in command.params if p.name}
    return {**named, **(aliases or {})}


def run_reporting_errors(work: Callable[[], int | None], verbose: bool, aliases: dict[str, str] | None = None) -> None:
    """Run ``work`` as a command's body: an MDHRError becomes its one line,
    its parameters named as this command's flags (``command_flags``)."""
    context = click.get_current_context(silent=True)
    flags = command_flags(context.command, aliases) if context is not None else dict(aliases or {})
    quiet_ffmpeg(verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _interrupt) for s in handled} if in_main_thread else {}
    watcher = _SignalWatcher() if in_main_thread else None
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
        if in_main_thread:
            _exit_now(EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        click.echo("terminated; nothing was written", err=True)
        if in_main_thread:
            _exit_now(EXIT_TERMINATED)
        sys.exit(EXIT_TERMINATED)
    except Exception as e:  # a bug: say so briefly unless asked for details
        if verbose:
            raise
        click.echo(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                   "(run again with --verbose for the traceback, and please report it)", err=True)
        sys.exit(EXIT_BUG)
    finally:
        if watcher is not None:
            watcher.close()
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    sys.exit(code or 0)


class PathRefused(click.ClickException):
    """A path argument that is no path, refused as the other user errors are:
    one line, exit 2."""

    exit_code = EXIT_USER_ERROR

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


class PathType(click.Path):
    """click.Path giving a ``pathlib.Path``, refusing an empty text (it
    would otherwise mean the working folder) and, for a file to write
    (``output_file``), a name ending in a separator (it names a folder, and
    the separator would be dropped: ``--out newdir/`` would become a file
    named newdir)."""

    def __init__(self, output_file: bool = False):
        super().__init__(path_type=Path)
        self.output_file = output_file

    def convert(self, value, param, ctx):
        if isinstance(value, (str, bytes)):
            text = os.fsdecode(value)
            name = "/".join(param.opts) if isinstance(param, click.Option) else param.human_readable_name
            if not text.strip():
                raise PathRefused(f"{name} is empty ({value!r}): an empty text is not a path; give a file or "
                                  "folder name (. for the working folder)")
            if self.output_file and text != "-" and text.endswith(("/", os.sep)):
                raise PathRefused(f"{name} {text} ends with {text[-1]}, so it names a folder, and {name} is a file "
                                  f"to write: give a file name (for example {text}NAME)")
        return super().convert(value, param, ctx)


PATH = PathType()
OUTPUT_FILE = PathType(output_file=True)


def say(line: str) -> None:
    """A progress or notice line, on stderr (stdout holds results)."""
    click.echo(line, err=True)


def _print_manual(page: str):
    def show(ctx: click.Context, param, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        from importlib import resources

        folder = resources.files("mdhr_docs")
        click.echo(folder.joinpath(page).read_text(encoding="utf-8"), nl=False)
        click.echo(f"\n(docs/{page}; every page of the manual is in {folder})", err=True)
        ctx.exit(0)
    return show


def mdhr_command(page: str, examples: Sequence[str]):
    """A command whose --help names its manual page and ends with its
    examples, and whose --docs prints that page: the manual (docs/) is
    installed with the package, so a pip-installed user has it too."""
    epilog = "\b\nExample:\n" + "\n".join(f"  {line}" for line in examples)

    def decorate(function):
        # listed last among the options (click shows __click_params__ reversed)
        docs = click.Option(["--docs"], is_flag=True, expose_value=False, is_eager=True, callback=_print_manual(page),
                            help=f"Print this command's manual page (docs/{page}) and exit.")
        function.__click_params__ = [docs, *getattr(function, "__click_params__", [])]
        return click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=epilog)(function)
    return decorate


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Show progress details and full tracebacks.")
