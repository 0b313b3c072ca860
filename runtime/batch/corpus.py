"""The bookkeeping of a batch job over many videos (``mdhr-batch``):
which files the inputs name, where each one's CSV goes, the summary table,
and which videos an earlier run already finished.

Nothing here runs a model; ``batch.py`` does, on Ray.
"""
from __future__ import annotations

import csv
import fcntl
import glob
import hashlib
import io
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from mdhr.errors import InputError, param
from mdhr_runtime.bundle import CARD_FILE, Bundle
from mdhr_runtime.files.atomic import write_atomically

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".mts", ".m2ts", ".3gp", ".ogv"})
SUMMARY_FILE = "summary.csv"
STATUSES = ("ok", "partial", "failed", "skipped")  # a video's outcome in summary.csv, defined once
OK, PARTIAL, FAILED, SKIPPED = STATUSES


# -- inputs --------------------------------------------------------------------


def expand_inputs(arguments: Sequence[str]) -> list[Path]:
    """The videos named by INPUT arguments, in order, without repeats:
    files as given, folders searched (recursively) for video suffixes, glob
    patterns expanded, ``@list.txt`` read one path (or pattern) a line.
    A path that does not exist stays in the list (it becomes a failed row);
    an unreadable list file is refused."""
    found: list[Path] = []
    for argument in arguments:
        found += _expand(argument)
    seen, unique = set(), []
    for path in found:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(Path(key))
    return unique


def _expand(argument: str) -> list[Path]:
    if not argument.strip() or argument == "@":
        raise InputError(f"{param('inputs')} {argument!r} is empty: an empty text is not a path; give a video, a folder, a "
                         "pattern or @list.txt (. for the working folder)")
    if argument.startswith("@"):
        listing = Path(argument[1:])
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the input list {listing} ({getattr(e, 'strerror', None) or e}); "
                             "give a text file with one video path per line") from None
        base = listing.parent
        names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [p for name in names for p in _expand(name if os.path.isabs(name) else str(base / name))]
    path = Path(argument)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not path.exists() and glob.has_magic(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        return [p for m in matches for p in (_expand(m) if Path(m).is_dir() else [Path(m)])] or [path]
    return [path]


# -- outputs -------------------------------------------------------------------


def output_names(videos: Sequence[Path], taken: dict[Path, str] | None = None) -> dict[Path, str]:
    """Each video's CSV, relative to the output folder: its path below the
    videos' common folder with the suffix changed to .csv.  Two videos that
    would share a name (clip.mp4 and clip.avi) keep their suffix
    (clip.avi.csv); ``taken`` are names kept from an earlier run."""
    names = dict(taken or {})
    used = {name.lower() for name in names.values()} | {SUMMARY_FILE}
    fresh = [v for v in videos if v not in names]
    if not fresh:
        return names
    root = Path(os.path.commonpath([str(v.parent) for v in videos]))
    stems = [str(v.relative_to(root).with_suffix(".csv")) for v in fresh]
    clashes = {s.lower() for s in stems if [t.lower() for t in stems].count(s.lower()) > 1}
    for video, stem in zip(fresh, stems):
        name = stem
        if name.lower() in clashes or name.lower() in used:
            name = str(video.relative_to(root)) + ".csv"
        counter = 2
        while name.lower() in used:  # still taken (an earlier run's name): number it
            name = f"{video.relative_to(root)}.{counter}.csv"
            counter += 1
        used.add(name.lower())
        names[video] = name
    return names


def bundle_hash(bundle: Bundle) -> str:
    """What identifies a bundle's numbers: its model card and every artifact
    it names, hashed (sha256, first 16 hex digits)."""
    digest = hashlib.sha256()
    names = sorted(artifact.name for artifact in bundle.card.artifacts.values())
    paths = [bundle.root / CARD_FILE] + [bundle.root / name for name in names]
    for path in paths:
        if path.is_file():
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


# -- the summary ---------------------------------------------------------------


@dataclass
class SummaryRow:
    path: str
    frames: int | None = None
    frames_with_face: int | None = None
    fps: float | None = None
    status: str = FAILED
    error: str = ""
    output: str = ""
    bundle_hash: str = ""
    node: str = ""  # the Ray node (its id) that scored the video; empty when no worker ran it
    retries: int = 0  # times the video was started again after its worker or node was lost

    @property
    def output_complete(self) -> bool:
        """The run wrote an output from every frame of the video (a faceless
        video's too; a truncated one's is partial, and is redone)."""
        return bool(self.output) and self.status in (OK, FAILED, SKIPPED)

    @property
    def fine(self) -> bool:
        return self.status == OK or (self.status == SKIPPED and not self.error)


COLUMNS = [f.name for f in fields(SummaryRow)]
# Summaries written before the node and retries columns; read as theirs.
EARLIER_COLUMNS = COLUMNS[:8]


def format_summary(rows: Iterable[SummaryRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        values = asdict(row)
        values["fps"] = "" if row.fps is None else f"{row.fps:.3f}"
        writer.writerow(["" if values[c] is None else values[c] for c in COLUMNS])
    return buffer.getvalue().encode("utf-8")


@contextmanager
def summary_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive use of ``out_dir``'s summary among mdhr-batch jobs on this
    and (where the file system supports it) other machines: a ``flock`` on
    the folder itself, so no lock file joins the outputs.  The folder is
    made here, when a job first has something to record."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InputError(f"{param('out_dir')}: cannot write in {out_dir} ({e.strerror}); choose a writable output "
                         "folder") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def merge_summary(path: Path, rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """The summary on disk with ``rows`` in it: a video's row replaced in
    place, new videos after the others in the given order.  Rows of other
    jobs (concurrent or earlier) on the same folder are kept."""
    merged = read_summary(path)
    for row in rows:
        merged[row.path] = row
    return list(merged.values())


def write_summary(path: Path, rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """Merge ``rows`` into the summary at ``path`` and write it whole, under
    the folder's lock (call with the lock held); the merged rows."""
    merged = merge_summary(path, rows)
    write_atomically(path, format_summary(merged))
    return merged


def summary_header(path: Path) -> list[str] | None:
    """The column names of the CSV at ``path``; None when it cannot be read
    as text."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return next(csv.reader([handle.readline()]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def is_batch_summary(path: Path) -> bool:
    return summary_header(path) in (COLUMNS, EARLIER_COLUMNS)


def read_summary(path: Path) -> dict[str, SummaryRow]:
    """An earlier run's rows by video path, in the file's order; none when
    there is no readable summary (then every video is done again)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    rows = {}
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames not in (COLUMNS, EARLIER_COLUMNS):
        return {}
    for record in reader:
        try:
            row = SummaryRow(path=record["path"], frames=_int(record["frames"]),
                             frames_with_face=_int(record["frames_with_face"]),
                             fps=float(record["fps"]) if record["fps"] else None, status=record["status"],
                             error=record["error"], output=record["output"], bundle_hash=record["bundle_hash"],
                             node=record.get("node") or "", retries=_int(record.get("retries") or "") or 0)
        except (ValueError, TypeError):
            continue
        rows[row.path] = row
    return rows


def _int(text: str) -> int | None:
    return int(text) if text else None


def finished_before(previous: SummaryRow | None, out_dir: Path, digest: str) -> bool:
    """An earlier run made this video's complete output with the same bundle,
    and the file is still there."""
    return (previous is not None and previous.output_complete and previous.bundle_hash == digest
            and (out_dir / previous.output).is_file())
