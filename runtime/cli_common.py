"""What every mdhr-* command does with errors: one clear line and a
non-zero exit; the traceback only with --verbose."""
from __future__ import annotations

import sys
from typing import Callable

import click

from mdhr.errors import MDHRError

EXIT_USER_ERROR = 2
EXIT_BUG = 1


def run_reporting_errors(work: Callable[[], int | None], verbose: bool) -> None:
    try:
        code = work()
    except MDHRError as e:
        if verbose:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted; nothing was written", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so briefly unless asked for details
        if verbose:
            raise
        click.echo(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                   "(run again with --verbose for the traceback, and please report it)", err=True)
        sys.exit(EXIT_BUG)
    sys.exit(code or 0)


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Show progress details and full tracebacks.")
