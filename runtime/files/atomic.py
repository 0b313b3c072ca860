"""Writing output files whole or not at all."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mdhr.errors import MDHRError

# Staging beside a target is named .NAME.mdhr-PID-XXXX.part: hidden, tied to
# its target by name and to its writer by process id, so a later run can
# remove what a killed one left (mdhr_runtime.files.outputs.remove_stale_staging).
STAGING_SUFFIX = ".part"


def staging_prefix(target: Path, pid: int | None = -1) -> str:
    """The staging name prefix for ``target``; ``pid=None`` gives the part
    shared by every writer's staging (for globbing)."""
    if pid == -1:
        pid = os.getpid()
    return f".{target.name}.mdhr-" + ("" if pid is None else f"{pid}-")


def umask() -> int:
    """The process umask, read without changing it (os.umask would, and
    briefly, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def usual_mode(folder: bool = False) -> int:
    """The mode a plain open() or mkdir() would give: 0666 or 0777 less the umask
    (mkstemp and mkdtemp make private 0600/0700 files and folders)."""
    return (0o777 if folder else 0o666) & ~umask()


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; renamed to ``target``
    when the block ends normally, deleted when it raises.  Readers therefore
    see the old file or the complete new one, never a partial one.  A
    writer that removes the temporary path has decided to write nothing:
    the target is then left as it was."""
    target = Path(target)
    if target.is_dir():
        raise MDHRError(f"output path {target} is a folder: give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=staging_prefix(target), suffix=STAGING_SUFFIX, dir=target.parent)
    except OSError as error:
        raise MDHRError(f"cannot write to {target.parent}: {error.strerror}; choose a writable output folder") from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if not temporary.exists():
            return
        os.chmod(temporary, usual_mode())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)
