"""mdhr-batch --report: one report per video and an index page of the corpus.

Reports are made by the driver after the job, from the CSVs written and
the input videos (so a rerun that skipped a video still reports it); the
index has one row per video: status, frames, share of frames with a face,
most active AUs, and a link to its report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mdhr.errors import MDHRError
from mdhr_runtime.batch.corpus import PARTIAL
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.results.provenance import Provenance
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.report import href, page_text, write_report
from mdhr_runtime.results.summary import summarise

INDEX_FILE = "index.html"
# Marks a page as an index mdhr-batch wrote, so a rerun may replace it (and nothing else).
GENERATOR = '<meta name="generator" content="mdhr-batch index">'


def is_batch_index(path: Path) -> bool:
    """``path`` is a regular file that an mdhr-batch job wrote as its index."""
    try:
        with open(path, "rb") as handle:
            return path.is_file() and not path.is_symlink() and GENERATOR.encode() in handle.read(4096)
    except OSError:
        return False


@dataclass(frozen=True)
class IndexRow:
    video: str
    status: str
    frames: int | None
    face_share: float | None
    most_active: list[str]
    report: str  # relative to the index; "" without one
    note: str


def report_path(out_dir: Path, output: str) -> Path:
    """The report beside a video's CSV: OUT/a/clip.csv -> OUT/a/clip.html."""
    return (out_dir / output).with_suffix(".html")


def write_corpus_reports(rows: Sequence, out_dir: Path, index: Path, provenance: Provenance,
                         say: Callable[[str], None]) -> Path:
    """A report for every summary row with a CSV (beside it), then the
    ``index`` page linking them.  A video whose report cannot be made keeps
    its row, with the reason."""

    entries = []
    for row in rows:
        if not row.output:
            entries.append(IndexRow(row.path, row.status, row.frames, None, [], "", row.error))
            continue
        target = report_path(out_dir, row.output)
        try:
            table = read_csv(out_dir / row.output, provenance.threshold)
            partial = {"complete": False, "incomplete_reason": row.error} if row.status == PARTIAL else {}
            write_report(table, row.path, target, provenance.replace(input=row.path, video_fps=row.fps, **partial))
        except MDHRError as error:
            entries.append(IndexRow(row.path, row.status, row.frames, None, [], "", f"no report: {error}"))
            continue
        summary = summarise(table)
        link = Path(os.path.relpath(target.absolute(), Path(index).absolute().parent)).as_posix()
        entries.append(IndexRow(row.path, row.status, summary.frames, summary.frames_with_face / summary.frames,
                                summary.most_active(), link, row.error))
    with atomic_path(index) as temporary:
        temporary.write_text(index_html(entries, provenance), encoding="utf-8")
    say(f"reports: {sum(bool(e.report) for e in entries)} of {len(entries)} videos; index in {index}")
    return index


def index_html(entries: Sequence[IndexRow], provenance: Provenance) -> str:
    e = page_text
    rows = []
    for entry in entries:
        link = f"<a href=\"{e(href(entry.report))}\">report</a>" if entry.report else ""
        share = "" if entry.face_share is None else f"{entry.face_share:.0%}"
        rows.append(f"<tr class=\"video\"><td>{e(entry.video)}</td><td class=\"status-{e(entry.status)}\">"
                    f"{e(entry.status)}</td><td class=\"number\">{'' if entry.frames is None else entry.frames}</td>"
                    f"<td class=\"number\">{share}</td><td>{e(', '.join(entry.most_active))}</td><td>{link}</td>"
                    f"<td class=\"note\">{e(entry.note)}</td></tr>")
    untrained = ("<p class=\"untrained\">UNTRAINED MODEL: this bundle was made by mdhr-export --random-init; its AU "
                 "outputs are meaningless.</p>") if provenance.untrained else ""
    made = ", ".join(f"{key} {e(_shown(value))}" for key, value in provenance.facts().items()
                     if key in ("dataset", "backbone", "backend", "windows", "faces", "threshold"))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + GENERATOR + "<title>MDHR corpus</title><style>"
            "body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1200px;padding:0 1em}"
            "table{border-collapse:collapse;font-size:.9em}td,th{padding:.2em .7em;border-bottom:1px solid #eee;"
            "text-align:left}td.number{text-align:right}.note{color:#555}.status-failed,.status-partial{color:#b30000}"
            ".untrained{background:#b30000;color:#fff;font-weight:bold;padding:.6em 1em}</style></head><body>"
            f"<h1>MDHR corpus: {len(entries)} videos</h1>{untrained}<p class=\"note\">{made}</p>"
            "<table><tr><th>video</th><th>status</th><th>frames</th><th>face found</th><th>most active AUs "
            "(share of face frames)</th><th></th><th>note</th></tr>" + "".join(rows) + "</table></body></html>\n")


def _shown(value) -> str:
    """A fact as the index states it: a window plan as "centred, 4 frames, hop 1"."""
    if isinstance(value, dict):
        return f"{value['mode']}, {value['frames']} frames, hop {value['hop']}"
    return str(value)
