"""Atomic folder writing: a bundle appears whole or not at all."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Mapping, TypeVar

from mdhr.errors import InputError, param
from mdhr_runtime.bundle import CARD_FILE
from mdhr_runtime.files.atomic import (
    FULL_DEVICE,
    STAGING_SUFFIX,
    full_device_error,
    make_folders,
    remove_folders,
    staging_prefix,
    usual_mode,
)
from mdhr_runtime.files.outputs import check_output_folder
from mdhr_runtime.held import signals_held

Section = TypeVar("Section")


@dataclass(frozen=True)
class Written(Generic[Section]):
    """What one export step added to the staging folder: its section of
    the card, the files it wrote (kind -> file name; None: a kind it
    removed) and the agreement it measured (a parity report)."""
    section: Section
    files: Mapping[str, str | None] = field(default_factory=dict)
    report: dict | None = None


def check_bundle_target(target: Path) -> Path:
    """Before any work: ``target`` can become a bundle folder (new, empty,
    or an existing bundle to replace) and its parent is writable."""
    target = Path(target).absolute()
    check_output_folder(target, param("out"))
    if target.exists() and not _replaceable(target):
        raise InputError(f"{target}: exists and is not an MDHR bundle; choose an empty or new {param('out')} folder")
    return target


@contextmanager
def staged_folder(target: Path, check=check_bundle_target, option: str = param("out")):
    """Yield an empty staging folder beside ``target`` (which ``check`` has
    approved and returned absolute); on success it replaces ``target`` (a
    previous one is swapped out only at the very end), on failure or
    interruption it is removed and ``target`` is untouched."""
    target = check(target)
    created = make_folders(target.parent)
    staging = None
    try:
        with signals_held():  # made and known together: a signal between the two would leave it behind
            staging = Path(tempfile.mkdtemp(prefix=staging_prefix(target), suffix=STAGING_SUFFIX, dir=target.parent))
        yield staging
        os.chmod(staging, usual_mode(folder=True))  # mkdtemp's 0700 would hide the folder from other users
        _swap_in(staging, target)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        remove_folders(created)
        if isinstance(error, OSError) and error.errno in FULL_DEVICE:
            raise full_device_error(error, target) from None
        if isinstance(error, OSError) and staging is None:
            raise InputError(f"{target}: cannot write there ({error.strerror}); choose a writable {option} "
                             "folder") from None
        raise


def _replaceable(target: Path) -> bool:
    return target.is_dir() and ((target / CARD_FILE).is_file() or not any(target.iterdir()))


def _swap_in(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
