"""Writing output files whole or not at all."""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mdhr.errors import InputError, MDHRError
from mdhr_runtime.held import signals_held

# Staging beside a target is named .NAME.mdhr-PID-XXXX.part: hidden, tied to
# its target by name and to its writer by process id, so a later run can
# remove what a killed one left (mdhr_runtime.files.outputs.remove_stale_staging).
STAGING_SUFFIX = ".part"


# Room a staging name needs beyond its target's name: ".", ".mdhr-", a
# process id (up to 7 digits), "-", mkstemp's 8 letters and ".part".
STAGING_OVERHEAD = 1 + 6 + 7 + 1 + 8 + len(STAGING_SUFFIX)
# File systems that do not say (pathconf fails) are taken to allow this.
DEFAULT_NAME_MAX = 255

# The errors of a device that cannot take more: no space, over quota, a
# file larger than the file system allows.
FULL_DEVICE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` (or of
    its nearest existing ancestor) takes."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return int(os.pathconf(existing, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def staging_prefix(target: Path, pid: int | None = -1) -> str:
    """The staging name prefix for ``target``; ``pid=None`` gives the part
    shared by every writer's staging (for globbing).  A name too long to
    carry the staging decorations (a 255-byte name the file system itself
    takes) is replaced by a digest of it, so such a target can be written."""
    if pid == -1:
        pid = os.getpid()
    name = target.name
    if len(os.fsencode(name)) + STAGING_OVERHEAD > name_max(target.parent):
        name = "mdhr-long-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:24]
    return f".{name}.mdhr-" + ("" if pid is None else f"{pid}-")


def full_device_error(error: OSError, target: Path) -> MDHRError:
    """The one line for a write a full device refused."""
    why = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
           errno.EFBIG: "the file is larger than the file system allows"}[error.errno]
    return InputError(f"cannot write {target}: {why}; free space there or choose another output folder "
                      "(nothing was written)")


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
        raise InputError(f"output path {target} is a folder: give a file name")
    created = make_folders(target.parent)
    temporary = None
    try:
        with signals_held():  # made and known together: a signal between the two would leave it behind
            handle, name = tempfile.mkstemp(prefix=staging_prefix(target), suffix=STAGING_SUFFIX, dir=target.parent)
            os.close(handle)
            temporary = Path(name)
        yield temporary
        if not temporary.exists():
            return
        os.chmod(temporary, usual_mode())
        os.replace(temporary, target)
    except BaseException as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        remove_folders(created)
        if isinstance(error, OSError) and error.errno in FULL_DEVICE:
            raise full_device_error(error, target) from None
        if isinstance(error, OSError) and temporary is None:
            raise InputError(f"cannot write to {target.parent}: {error.strerror}; choose a writable output "
                             "folder") from None
        raise


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; the ones created, the
    deepest first (so a refused run can remove them again)."""
    missing = []
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
    except OSError as error:
        remove_folders(missing)
        if error.errno in FULL_DEVICE:
            raise full_device_error(error, missing[0]) from None
        raise InputError(f"cannot create the folder {made}: {error.strerror}; choose a writable output folder") from None
    return missing


def remove_folders(created: list[Path]) -> None:
    """Remove the folders ``make_folders`` created, where they are still empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def write_atomically(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)
