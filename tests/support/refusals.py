"""Helpers for the tests of refusals, paths and staging (test_outputs,
test_export_refusals, test_truncated_video)."""
from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner


def user_lines(text: str) -> list[str]:
    """The lines of a command's messages a user must read: all but blank
    ones and the untrained bundle's warning."""
    return [line for line in text.splitlines() if line.strip() and "UNTRAINED" not in line]


def error_line(output: str, *expected: str, alone: bool = False) -> str:
    """The one line 'error: ...' of a command's ``output``, holding every
    ``expected`` text, with no traceback; ``alone``: the only line a user
    must read there."""
    lines = user_lines(output)
    errors = lines if alone else [line for line in lines if line.startswith(("error", "internal error"))]
    assert len(errors) == 1 and errors[0].startswith("error: "), output[-2000:]
    assert "Traceback" not in output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def one_line_refusal(command, args, *expected):
    """The command exits 2 with exactly one line, 'error: ...', holding
    every ``expected`` text, and no traceback."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return error_line(result.output, *expected)


def staging_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".mdhr-" in p.name or ".partial" in p.name)


def dead_pid() -> int:
    """A process id no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def run_args(video, bundle, out, *more):
    return [video, "--model", bundle, "--out", out, *more]


def as_user(user, invoke) -> tuple[int, str]:
    """Run ``invoke`` (a CliRunner call) in a forked child as ``user``; its
    exit code and output."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            result = invoke()
            message = f"{result.exit_code}\n{result.output}"
        except BaseException as e:  # report anything, then leave
            message = f"-1\n{e!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, _, output = data.partition("\n")
    return int(code), output
