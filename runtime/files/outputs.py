"""Checking input and output paths before any work, and writing several
outputs all or nothing.

Every mdhr-* command calls ``check_input`` / ``check_output_file`` /
``check_distinct`` on its paths before it loads a model or reads a frame,
so a bad path costs a second, not a whole run.  Outputs only ever replace
regular files: a folder, device node, FIFO or socket at an output path is
refused, and so is a symbolic link (following it would write somewhere the
user did not name; replacing it would destroy the link).

``staged_files`` stages a group of outputs beside their targets and renames
them into place only when all of them were written.  Staging names carry the
writer's process id (``.NAME.mdhr-PID-XXXX.part``), so a later run can tell
staging left by a killed process (SIGKILL, power loss) from a live one and
remove it: ``remove_stale_staging``.

An output named ``-`` is standard output (``STDOUT``): it is skipped by the
path checks and staged in a private temporary folder, then copied to
standard output once every output of the group was written.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from mdhr.errors import InputError, MDHRError
from mdhr_runtime.files.atomic import STAGING_SUFFIX, atomic_path, name_max, staging_prefix

STDOUT = "-"


def is_stdout(path: str | Path | None) -> bool:
    return path is not None and str(path) == STDOUT


_STAGING_PID = re.compile(r"\.mdhr-(\d+)-[^/]*" + re.escape(STAGING_SUFFIX) + r"$")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def check_input(path: str | Path, what: str = "input", folder_ok: bool = True) -> Path:
    """``path`` exists, is a regular file (or a folder where ``folder_ok``)
    and can be read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}; check the path") from None
    except OSError as e:
        raise InputError(f"{what} {path} cannot be read ({e.strerror}); check the path and its permissions") from None
    if stat.S_ISDIR(mode) and not folder_ok:
        raise InputError(f"{what} {path} is a folder; give a file")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{what} {path} is a {_kind(mode)}, not a file or folder; give a file")
    needed = os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)
    if not os.access(path, needed):
        raise InputError(f"{what} {path} is not readable (permission denied); check its permissions")
    return path


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` may be written: absent or a regular file, not a link, in a
    folder that exists (or can be created) and is writable."""
    path = Path(path)
    check_names(path, option)
    if path.is_symlink():
        raise InputError(f"{option} {path} is a symbolic link (to {os.readlink(path)}); outputs never write "
                         "through or over links: give the real path or another name")
    if path.exists():
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{option} {path} is a folder; give a file name")
        if not stat.S_ISREG(mode):
            raise InputError(f"{option} {path} is a {_kind(mode)}, not a regular file; outputs only replace "
                             "regular files: choose another path")
    check_writable_folder(path.parent, option)
    return path


def check_output_folder(path: str | Path, option: str) -> Path:
    """A folder the command creates or replaces whole (a bundle): not a link,
    not a file, and its parent writable."""
    path = Path(path)
    check_names(path, option)
    if path.is_symlink():
        raise InputError(f"{option} {path} is a symbolic link (to {os.readlink(path)}); give the real folder "
                         "or a new name")
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a {_kind(path.stat().st_mode)}, not a folder; choose a new "
                         "folder name")
    check_writable_folder(path.absolute().parent, option)
    return path


def check_names(path: Path, option: str) -> None:
    """Every part of ``path`` is a name its file system takes: not longer
    than its NAME_MAX (bytes), and the whole path within PATH_MAX."""
    absolute = Path(os.path.abspath(path))
    parts = absolute.parts[1:]
    for depth, part in enumerate(parts):
        folder = Path(absolute.anchor, *parts[:depth])
        size, limit = len(os.fsencode(part)), name_max(folder)
        if size > limit:
            shown = part if len(part) <= 40 else part[:20] + "..." + part[-12:]
            raise InputError(f"{option}: the name {shown} is {size} bytes long and the file system of {folder} takes "
                             f"at most {limit}; choose a shorter name")
    try:
        path_max = int(os.pathconf("/", "PC_PATH_MAX"))
    except (OSError, ValueError):
        path_max = 4096
    if len(os.fsencode(str(absolute))) >= path_max:
        raise InputError(f"{option}: the path is {len(os.fsencode(str(absolute)))} bytes long and the system takes "
                         f"less than {path_max}; choose a shorter path")


def check_free_space(folder: str | Path, needed: int, option: str) -> None:
    """The device holding ``folder`` (or its nearest existing ancestor) has
    at least ``needed`` bytes free for an unprivileged writer: a full disk is
    named before the work, not after it."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        info = os.statvfs(existing)
    except OSError:
        return
    free = info.f_bavail * info.f_frsize
    if free < needed:
        raise InputError(f"{option}: the device holding {existing} has {_size(free)} free and this output needs "
                         f"about {_size(needed)}; free space there or choose another output folder")


# What an output takes at least: a table's row (CSV or JSON, per frame) and
# a floor for any file (a plot, a report's page).  An estimate meant to find
# a full disk before the work, not to promise that the outputs fit.
TABLE_BYTES_PER_FRAME = 120
OUTPUT_FLOOR_BYTES = 64 * 1024


def check_room(outputs: Mapping[str, Path | None], frames: int | None) -> None:
    """Each file output's device has room for it (``frames``: the input's
    frame count where known)."""
    needed = OUTPUT_FLOOR_BYTES + TABLE_BYTES_PER_FRAME * (frames or 0)
    for option, path in outputs.items():
        if path is not None and not is_stdout(path):
            check_free_space(Path(path).absolute().parent, needed, option)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def check_writable_folder(folder: str | Path, option: str) -> Path:
    """``folder`` exists and is writable, or its nearest existing ancestor is
    a writable folder (so it can be created)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option}: {existing} is not a folder, so {folder} cannot be created there; "
                         "choose another output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write in {existing} (permission denied or read-only); "
                         "choose a writable output folder")
    return folder


def _identity(path: Path) -> str:
    return os.path.realpath(path)


def check_distinct(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]) -> None:
    """No output is an input, lies as an existing file in an input folder,
    or is the same file as another output."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if is_stdout(path):
            if STDOUT in seen:
                raise InputError(f"{seen[STDOUT]} and {option} cannot both be standard output (-): give one of "
                                 "them a file name")
            seen[STDOUT] = option
            continue
        for source, given in inputs.items():
            if given is not None and _same_or_inside(Path(path), Path(given)):
                raise InputError(f"{option} {path} would replace {source} {given}; an output never replaces an "
                                 "input: choose another name")
        key = _identity(Path(path))
        if key in seen:
            raise InputError(f"{seen[key]} and {option} are the same file ({path}); give each output its own path")
        seen[key] = option


def _same_or_inside(output: Path, source: Path) -> bool:
    if output.exists() and source.exists() and os.path.samefile(output, source):
        return True
    if _identity(output) == _identity(source):
        return True
    # An existing file inside an input folder (a frame of an image folder,
    # a bundle's model) is part of the input.
    return source.is_dir() and output.is_file() and Path(_identity(output)).is_relative_to(_identity(source))


def check_run_paths(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]) -> None:
    """Everything ``mdhr-*`` checks about its file arguments, in one call:
    inputs exist and are readable, outputs are writable regular files or
    absent, all distinct."""
    for what, path in inputs.items():
        if path is not None:
            check_input(path, what)
    for option, path in outputs.items():
        if path is not None and not is_stdout(path):
            check_output_file(path, option)
    check_distinct(outputs, inputs)


# -- staging -------------------------------------------------------------------


@contextmanager
def staged_files(targets: Sequence[Path | None]) -> Iterator[list[Path | None]]:
    """Temporary paths beside each target (None stays None).  When the block
    ends normally every target is replaced by its staged file; when it raises
    (or is interrupted), every staged file is removed and no target changes."""
    with ExitStack() as stack:
        staged = [None if t is None else stack.enter_context(_to_stdout() if is_stdout(t) else atomic_path(t))
                  for t in targets]
        yield staged
    # ExitStack renames in reverse order on success, or removes every staged
    # file as the exception passes through.


@contextmanager
def _to_stdout() -> Iterator[Path]:
    """A private temporary file, copied to standard output when the block
    ends normally; removed either way."""
    folder = Path(tempfile.mkdtemp(prefix="mdhr-stdout-"))
    try:
        yield folder / "output"
        try:
            with open(folder / "output", "rb") as staged:
                shutil.copyfileobj(staged, sys.stdout.buffer)
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader (head, a closed pipe) stopped; Python's exit flush must not complain again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise MDHRError("standard output was closed before the whole output was written (the program "
                            "reading it stopped early)") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(target: str | Path, say: Callable[[str], None]) -> list[Path]:
    """Remove staging files or folders for ``target`` left by processes that
    have ended, telling ``say`` about each.  Live writers' staging is kept."""
    target = Path(target).absolute()
    removed = []
    try:
        candidates = list(target.parent.glob(f"{staging_prefix(target, pid=None)}*{STAGING_SUFFIX}"))
    except OSError:
        return removed
    for path in candidates:
        match = _STAGING_PID.search(path.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        say(f"removed {path}: staging left by an interrupted run (process {match.group(1)} is gone)")
        removed.append(path)
    return removed
