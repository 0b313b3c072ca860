"""What made a run, as one record: made once per run and handed to every
writer (the CSV's run facts, the JSON's ``metadata``, the HTML report, the
batch index), so they all state the same settings.

A CSV cannot hold them without breaking its columns, so they travel beside
it: ``NAME.csv`` gets ``NAME.run.json`` (``facts_beside``), staged and
renamed with the CSV.  It names the CSV's SHA-256, so a later ``mdhr-report
NAME.csv`` uses the facts only while they describe that very file (a CSV
written again without them keeps none).  The file is untrusted input when
read back: bounded in size, each field checked for its type, unknown keys
ignored.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

from mdhr.errors import MDHRError
from mdhr_runtime.files.atomic import atomic_path

FACTS_SUFFIX = ".run.json"
# Far above any real record (under 1 KB); a larger file is not one.
MAX_FACTS_BYTES = 64 * 1024
FORMAT = "mdhr-run-facts/1"


@dataclass(frozen=True)
class Provenance:
    """The settings behind one table; None: not recorded."""

    input: str | None = None
    bundle: str | None = None
    dataset: str | None = None
    backbone: str | None = None
    untrained: bool | None = None
    backend: str | None = None
    precision: str | None = None
    windows: dict | None = None  # WindowPlan.describe(): mode, frames, hop, latency_frames
    faces: str | None = None
    min_face: int | None = None  # --faces all only
    threshold: float | None = None
    video_fps: float | None = None
    scoring_fps: float | None = None
    quality_flags: dict | None = None  # the --flag-* thresholds (faces/quality.py's QualityOptions)
    complete: bool | None = None  # False: the input was not read to its end (None: the table says)
    incomplete_reason: str | None = None

    def facts(self) -> dict:
        """The recorded fields, in order (the JSON's ``metadata``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def replace(self, **changes) -> "Provenance":
        return dataclasses.replace(self, **changes)

    def merged(self, other: "Provenance") -> "Provenance":
        """This record with every field ``other`` records taken from it."""
        return dataclasses.replace(self, **other.facts())


# The type each field must have when read back (bool is not an int here).
_TYPES = {"input": str, "bundle": str, "dataset": str, "backbone": str, "untrained": bool, "backend": str,
          "precision": str, "windows": dict, "faces": str, "min_face": int, "threshold": float,
          "video_fps": float, "scoring_fps": float, "quality_flags": dict, "complete": bool,
          "incomplete_reason": str}
_WINDOW_KEYS = {"mode": str, "frames": int, "hop": int, "latency_frames": int}


def facts_beside(csv_path: str | Path) -> Path:
    """Where the run facts of a CSV are: ``NAME.csv`` -> ``NAME.run.json``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + FACTS_SUFFIX)


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_facts(provenance: Provenance, path: str | Path, csv_file: str | Path) -> None:
    """The run facts of the CSV at ``csv_file`` (already written) into
    ``path`` as it is (callers stage it)."""
    document = {"format": FORMAT, "csv_sha256": file_digest(csv_file), **provenance.facts()}
    Path(path).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def is_facts_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file of run facts (so mdhr-* may replace
    it): not a link, folder or special file, and tagged with ``FORMAT``."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FACTS_BYTES:
        return False
    try:
        return json.loads(path.read_bytes().decode("utf-8")).get("format") == FORMAT
    except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        return False


def write_facts_beside(csv_path: str | Path, provenance: Provenance) -> Path:
    """``write_facts`` for a CSV already in place, staged and renamed."""
    path = facts_beside(csv_path)
    with atomic_path(path) as temporary:
        write_facts(provenance, temporary, csv_path)
    return path


def read_facts(csv_path: str | Path) -> Provenance | None:
    """The run facts beside ``csv_path``, or None when there are none or
    they describe another version of the CSV.  Refuses a file that is not
    run facts (MDHRError)."""
    path = facts_beside(csv_path)
    if not path.is_file():
        return None
    document = _load(path)
    if document.get("csv_sha256") != file_digest(csv_path):
        return None
    values = {}
    for name, kind in _TYPES.items():
        value = document.get(name)
        if value is None:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _not_facts(path, f"its {name} is not a {kind.__name__}")
        values[name] = _windows(path, value) if name == "windows" else _flags(path, value) \
            if name == "quality_flags" else value
    return Provenance(**values)


def _load(path: Path) -> dict:
    if path.stat().st_size > MAX_FACTS_BYTES:
        raise _not_facts(path, f"it is larger than {MAX_FACTS_BYTES // 1024} KB")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _not_facts(path, "it is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _not_facts(path, f"it does not say format {FORMAT}")
    return document


def _windows(path: Path, value: dict) -> dict:
    if set(value) != set(_WINDOW_KEYS) or any(
            not isinstance(value[k], t) or isinstance(value[k], bool) for k, t in _WINDOW_KEYS.items()):
        raise _not_facts(path, "its windows are not mode, frames, hop and latency_frames")
    return {k: value[k] for k in _WINDOW_KEYS}


def _flags(path: Path, value: dict) -> dict:
    if len(value) > 16 or any(not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float))
                              for k, v in value.items()):
        raise _not_facts(path, "its quality_flags are not named numbers")
    return dict(value)


def _not_facts(path: Path, why: str) -> MDHRError:
    return MDHRError(f"{path} is not the run facts mdhr-run writes beside a CSV ({why}); remove it, or write "
                     "the CSV again with mdhr-run")
