"""The HTML report: one self-contained file to open anywhere and send on.

It holds the annotated video (``overlay.py``), a heat-map timeline per
face (one row per AU, one column per frame, thinned past
``summary.MAX_COLUMNS``), the statistics per face and AU, and what made
the results.  Its script and style are inlined and it names no other
resource, so viewing it needs no network.

The video is embedded (base64, decoded into a Blob URL by the page) when
it is at most ``EMBED_LIMIT`` bytes, about a minute of 640x360 footage
or ten of a talking head; a larger one is written beside the report
(``NAME-video.mp4``) and linked relatively, since a browser holds an
embedded video three times over (text, bytes, Blob) and a 100 MB page is
slow to open and to send.

Several tables of the same video (two backends, two window modes) make
one report: their timelines one under the other on the same time axis,
their statistics side by side, and per AU how much they differ.
"""
from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import numpy as np

from mdhr.aus import au_description
from mdhr.errors import InputError
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.results import palette
from mdhr_runtime.results.overlay import face_colour, render_overlay
from mdhr_runtime.results.provenance import Provenance
from mdhr_runtime.results.summary import (
    RunSummary,
    encode_cells,
    encode_differences,
    encode_flags,
    frames_per_column,
    summarise,
    thin,
)

EMBED_LIMIT = 24 * 1024 * 1024

# What made a run, in the order shown; a key missing from the provenance is
# shown as "not recorded".
PROVENANCE_FIELDS = (
    ("input", "input"), ("bundle", "bundle"), ("dataset", "dataset"), ("backbone", "backbone"),
    ("backend", "backend"), ("precision", "precision"), ("windows", "window mode"), ("faces", "faces"),
    ("threshold", "threshold"), ("frames", "frames"), ("frames_with_face", "frames with a face"),
    ("frames_without_face", "frames without a face"), ("video_fps", "video frame rate (frames/s)"),
    ("scoring_fps", "scoring speed (frames/s)"),
)


def video_beside(html_path: str | Path) -> Path:
    """Where a report too large to embed its video puts it."""
    html_path = Path(html_path)
    return html_path.with_name(f"{html_path.stem}-video.mp4")


@dataclass(frozen=True)
class Run:
    """One table in a report, with its label and what made it."""

    label: str
    summary: RunSummary
    provenance: dict


@dataclass(frozen=True)
class ReportInfo:
    path: Path
    bytes: int
    video: str  # "embedded", "beside: PATH" or "none"
    frames_per_column: int


def write_report(table, video: str | Path | None, html_path: str | Path, provenance: Provenance | None = None,
                 overlay: str | Path | None = None, others: Sequence[tuple[str, object, Provenance]] = (),
                 label: str = "") -> ReportInfo:
    """Write the report of ``table`` (a FrameTable) to ``html_path``, staged
    and renamed when whole.

    ``video``: the input the table was scored from, for the annotated video
    (None: a report without video).  ``overlay``: an annotated video already
    written (mdhr-run --overlay), used instead of making one.  ``others``:
    (label, table, provenance) of more tables of the same video, compared
    with the first.  ``provenance``: what made the table (its fields are
    shown in the order of ``PROVENANCE_FIELDS``)."""
    html_path = Path(html_path)
    page, where, per_column = report_html(table, html_path, provenance, video, overlay, others=others, label=label)
    with atomic_path(html_path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return ReportInfo(html_path, html_path.stat().st_size, where, per_column)


def report_html(table, html_path: Path, provenance: Provenance | None = None, video: str | Path | None = None,
                overlay: Path | None = None, overlay_link: Path | None = None,
                others: Sequence[tuple[str, object, Provenance]] = (), label: str = "") -> tuple[str, str, int]:
    """The page of ``write_report`` for a report that will be at
    ``html_path``, with where its video went and the frames per timeline
    column.  ``overlay`` may be a staged file whose final path is
    ``overlay_link`` (what a large video's link points to)."""
    runs = [_run(label or "run 1", table, provenance or Provenance())]
    runs += [_run(name, other, meta) for name, other, meta in others]
    _check_same_video(runs)
    video_bytes, link = None, None
    if overlay is not None:
        if Path(overlay).stat().st_size <= EMBED_LIMIT:
            video_bytes = Path(overlay).read_bytes()
        else:
            link = _relative(Path(overlay_link or overlay), html_path)
    elif video is not None:
        video_bytes, link = _annotated_video(table, video, html_path)
    where = "embedded" if video_bytes is not None else f"beside: {link}" if link else "none"
    return _page(runs, video_bytes, link), where, frames_per_column(runs[0].summary.frames)


class _Embedded(Exception):
    """Leaves the staging block so the staged video is removed, not renamed."""


def _annotated_video(table, video: str | Path, html_path: Path) -> tuple[bytes | None, str | None]:
    """Make the annotated video in staging beside the report: its bytes when
    small enough to embed (the staging is then removed), else renamed to
    ``video_beside`` and linked."""
    beside = video_beside(html_path)
    embedded = None
    try:
        with atomic_path(beside) as staged:
            drawn = render_overlay(table, video, staged).frames
            frames = len({row.index for row in table.rows})
            if drawn != frames:
                raise InputError(f"{video} has {drawn} frames and the results {frames}: give the video they "
                                 "were scored from")
            if staged.stat().st_size <= EMBED_LIMIT:
                embedded = staged.read_bytes()
                raise _Embedded()
    except _Embedded:
        return embedded, None
    return None, _relative(beside, html_path)


def _relative(target: Path, html_path: Path) -> str:
    return Path(os.path.relpath(target.absolute(), html_path.absolute().parent)).as_posix()


def href(relative: str) -> str:
    """A relative file path as a link: every byte but letters, digits, '/'
    and '-._~' percent-encoded, so a name with spaces, #, ?, %, quotes or
    markup stays one path (not a fragment, a query or an escape), and
    non-UTF-8 bytes of a file name go through as they are."""
    return quote(os.fsencode(relative), safe="/")


def _run(label: str, table, provenance: Provenance) -> Run:
    summary = summarise(table)
    facts = {**provenance.facts(), "threshold": table.threshold, "frames": summary.frames,
             "complete": table.complete if provenance.complete is None else provenance.complete,
             "incomplete_reason": provenance.incomplete_reason or table.shortfall or None,
             "frames_with_face": summary.frames_with_face,
             "frames_without_face": summary.frames - summary.frames_with_face}
    return Run(label, summary, facts)


def _check_same_video(runs: list[Run]) -> None:
    first = runs[0].summary
    for run in runs[1:]:
        other = run.summary
        if not np.array_equal(other.frame_indices, first.frame_indices):
            raise InputError(f"{run.label} has {other.frames} frames and {runs[0].label} {first.frames} (or other "
                             "frame numbers): a comparison needs tables of the same video")
        if other.au_names != first.au_names:
            raise InputError(f"{run.label} scores {', '.join(other.au_names)} and {runs[0].label} "
                             f"{', '.join(first.au_names)}: a comparison needs tables of the same AUs")


# -- the page ---------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("mdhr_runtime.results").joinpath("report_assets", name).read_text(encoding="utf-8")


def _script_json(value) -> str:
    """JSON safe inside <script>: no "</" can end the element early."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _page(runs: list[Run], video_bytes: bytes | None, video_link: str | None) -> str:
    first = runs[0].summary
    per_column = frames_per_column(first.frames)
    times = first.times[::per_column]
    data = {"threshold": first.threshold, "frames": first.frames, "frames_per_column": per_column,
            "times": [round(float(t), 4) for t in times], "palette": palette.for_script()}
    title = _e(Path(str(runs[0].provenance.get("input") or runs[0].label)).name)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>MDHR report: {title}</title><style>{_asset('report.css')}</style></head><body>",
             f"<h1>MDHR action units: {title}</h1>"]
    if any(run.provenance.get("untrained") for run in runs):
        parts.append("<p class=\"untrained\" id=\"untrained\">UNTRAINED MODEL: this bundle was made by "
                     "mdhr-export --random-init; its AU outputs are meaningless (a demonstration of the tools only).</p>")
    parts += [_incomplete_note(run, len(runs)) for run in runs if run.provenance.get("complete") is False]
    parts.append(_video_section(video_bytes, video_link))
    parts.append(_timeline_section(runs, per_column))
    parts.append(_stats_section(runs))
    if len(runs) > 1:
        parts.append(_differences_section(runs))
    parts.append(_provenance_section(runs))
    parts.append(f"<script type=\"application/json\" id=\"mdhr-data\">{_script_json(data)}</script>")
    if video_bytes is not None:
        parts.append("<script type=\"application/octet-stream\" id=\"mdhr-video\">"
                     + base64.b64encode(video_bytes).decode("ascii") + "</script>")
    parts.append(f"<script>{_asset('report.js')}</script></body></html>\n")
    return "\n".join(parts)


def page_text(value) -> str:
    """Text for the page: escaped, and bytes of a file name that are not
    UTF-8 shown as the replacement character (the page is UTF-8)."""
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(text, quote=True)


_e = page_text


def _incomplete_note(run: Run, runs: int) -> str:
    """The banner of a run that did not read its input to its end."""
    who = f"{run.label}: " if runs > 1 else ""
    reason = run.provenance.get("incomplete_reason") or "the run stopped before the end of its input"
    return (f"<p class=\"untrained incomplete\" id=\"incomplete\">{_e(who)}INCOMPLETE RUN: the input was not read "
            f"to its end ({_e(reason)}); these results cover only the {run.summary.frames} frames read.</p>")


def _video_section(video_bytes: bytes | None, video_link: str | None) -> str:
    if video_bytes is None and video_link is None:
        return ("<p class=\"note\">No video in this report (give the video, e.g. mdhr-report --video, for the "
                "annotated one).</p>")
    source = "" if video_link is None else f" src=\"{_e(href(video_link))}\""
    where = ("embedded in this file" if video_link is None else
             f"beside this file: <a href=\"{_e(href(video_link))}\">{_e(video_link)}</a> (too large to embed; "
             "keep the two together)")
    return (f"<h2>Annotated video</h2><video id=\"video\" controls muted playsinline preload=\"auto\"{source}>"
            f"</video><p class=\"note\">Video {where}. Boxes and ids per face, one bar per AU (orange: at or above "
            "the threshold, whose tick is the white line); a red border where no face was found.</p>")


# Height of one AU's row in the timelines, in CSS pixels (the labels' too).
ROW_PX = 22


def _canvas(cells: bytes, rows: Sequence[str], columns: int, kind: str) -> str:
    encoded = base64.b64encode(cells).decode("ascii")
    return (f"<canvas class=\"timeline\" width=\"{columns}\" height=\"{len(rows)}\" data-kind=\"{kind}\" "
            f"data-rows=\"{_e(','.join(rows))}\" data-cells=\"{encoded}\" "
            f"style=\"height:{ROW_PX * len(rows)}px\"></canvas>")


def _au_name(code: str, kind: str = "au-code") -> str:
    """An AU's code with its FACS name beside it (``kind``: the code's class;
    the timelines' labels are ``au-label``)."""
    name = au_description(code)
    return f"<span class=\"{kind}\">{_e(code)}</span>" + (f" <span class=\"au-name\">{_e(name)}</span>"
                                                            if name else "")


def _panel(heading: str, cells: bytes, rows: Sequence[str], columns: int, kind: str, face: str,
           colour: str | None = None, axis: str = "") -> str:
    labels = "".join(f"<div class=\"au-row\" style=\"height:{ROW_PX}px;line-height:{ROW_PX}px\">"
                     f"{_au_name(code, 'au-label')}</div>" for code in rows)
    mark = f"<span class=\"face-mark\" style=\"background:{colour}\"></span>" if colour else ""
    return (f"<h3>{mark}{_e(heading)}</h3><div class=\"panel\" data-face=\"{_e(face)}\"><div class=\"labels\">"
            f"{labels}</div><div class=\"track\">{_canvas(cells, rows, columns, kind)}<div class=\"cursor\"></div>"
            f"</div><div></div>{axis}</div>")


def _time_axis(times: np.ndarray, ticks: int = 8) -> str:
    """Time labels under a timeline: about ``ticks`` of them at round seconds."""
    if len(times) < 2:
        return ""
    start, end = float(times[0]), float(times[-1])
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
                if (end - start) / s <= ticks)
    if not np.isfinite(step):
        return ""
    labels = []
    for k in range(int(np.ceil(start / step)), int(np.floor(end / step)) + 1):
        t = k * step
        where = (np.searchsorted(times, t - 1e-9) + 0.5) / len(times) * 100
        text = f"{t:g} s" if t < 60 else f"{int(t // 60)}:{t % 60:02.0f}"
        labels.append(f"<span style=\"left:{min(where, 100):.2f}%\">{text}</span>")
    return f"<div class=\"axis\">{''.join(labels)}</div>"


def _colour_scale(threshold: float) -> str:
    """The score colours with their values: -1 to 1, the hue changing at
    the threshold; grey for no face."""
    at = (threshold + 1) / 2 * 100
    ticks = "".join(f"<span style=\"left:{(v + 1) / 2 * 100:.2f}%\">{label}</span>"
                    for v, label in ((-1, "-1"), (0, "0"), (threshold, f"{threshold:g} threshold"), (1, "1"))
                    if v == threshold or abs(v - threshold) > 0.3)
    return (f"<div class=\"scale\"><div class=\"scale-title\">AU score</div><div class=\"scale-bar\" "
            f"style=\"background:{palette.css_gradient(threshold)}\"><i style=\"left:{at:.2f}%\"></i></div>"
            f"<div class=\"scale-ticks\">{ticks}</div><div class=\"scale-words\"><span>not active</span>"
            f"<span>active</span></div><div class=\"scale-absent\"><span style=\"background:"
            f"{palette.hex_colour(palette.ABSENT)}\"></span>face not found</div></div>")


def _flag_strip(face, columns: int, per_column: int) -> str:
    """One row under a face's timeline: red where its rows are flagged (any
    frame of the column), green where not (docs/running.md, quality)."""
    if face.flagged_share is None:
        return ""
    encoded = base64.b64encode(encode_flags(face.flagged, per_column)).decode("ascii")
    return (f"<div class=\"flag-strip\" data-face=\"{_e(face.label)}\"><div class=\"labels\">"
            "<div class=\"flag-label\">flagged</div></div><div class=\"track\"><canvas class=\"flags\" "
            f"width=\"{columns}\" height=\"1\" data-kind=\"flag\" data-rows=\"flagged\" data-cells=\"{encoded}\" "
            "style=\"height:14px\"></canvas><div class=\"cursor\"></div></div></div>")


def _timeline_section(runs: list[Run], per_column: int) -> str:
    first = runs[0].summary
    columns = -(-first.frames // per_column)
    thinning = ("one column per frame" if per_column == 1 else
                f"each column shows the highest score of {per_column} frames ({first.frames} frames in "
                f"{columns} columns; the statistics below use every frame)")
    parts = ["<h2>Timeline</h2>",
             f"<p class=\"note\">One row per AU, {thinning}. Click to seek the video; the red line follows "
             "playback. <span id=\"cursor-label\"></span></p>", _colour_scale(first.threshold)]
    axis = _time_axis(first.times[::per_column])
    for run in runs:
        for face in run.summary.faces:
            heading = face.label if len(runs) == 1 else f"{run.label}: {face.label}"
            cells = encode_cells(thin(face.scores, per_column), first.threshold)
            colour = palette.hex_colour(face_colour(face.face_id)) if face.face_id is not None else None
            parts.append(_panel(heading, cells, first.au_names, columns, "score", face.label, colour, axis))
            parts.append(_flag_strip(face, columns, per_column))
    if any(face.flagged_share is not None for run in runs for face in run.summary.faces):
        parts.append("<p class=\"legend note\"><span style=\"background:#d7301f\"></span>flagged: AU values not "
                     "to be trusted (head turned, face small, low confidence, just after a gap)"
                     "<span style=\"background:#a1d99b\"></span>not flagged</p>")
    return "\n".join(parts)


def _stats_section(runs: list[Run]) -> str:
    parts = ["<h2>Per face and AU</h2><p class=\"note\">Active: share of the face's scored frames at or above "
             "the threshold. Longest: the longest run of consecutive active frames.</p><div class=\"runs\">"]
    for run in runs:
        parts.append("<div>" + (f"<h3>{_e(run.label)}</h3>" if len(runs) > 1 else ""))
        for face in run.summary.faces:
            rows = "".join(
                f"<tr><td>{_au_name(s.au)}</td><td class=\"number\">{_share(s.active_share)}</td>"
                f"<td class=\"number\">{_number(s.mean_score)}</td><td class=\"number\">{s.longest_frames} "
                f"({s.longest_seconds:.2f} s)</td></tr>" for s in run.summary.stats(face))
            share = "" if face.flagged_share is None else \
                f" <span class=\"flagged-share\">(flagged: {_share(face.flagged_share)} of its frames)</span>"
            parts.append(f"<table class=\"stats\" data-face=\"{_e(face.label)}\"><caption>{_e(face.label)}{share}"
                         "</caption><tr><th>AU</th><th>active</th><th>mean score</th><th>longest active</th></tr>"
                         f"{rows}</table>")
        parts.append("</div>")
    parts.append("</div>")
    return "\n".join(parts)


def _differences_section(runs: list[Run]) -> str:
    """Per AU, for each further run against the first (faces paired by id):
    frames whose active flag differs, mean and largest score difference,
    and a timeline of the differences."""
    first = runs[0]
    per_column = frames_per_column(first.summary.frames)
    columns = -(-first.summary.frames // per_column)
    threshold = first.summary.threshold
    parts = ["<h2>Differences</h2>"]
    for run in runs[1:]:
        for face in first.summary.faces:
            other = next((f for f in run.summary.faces if f.face_id == face.face_id), None)
            if other is None:
                parts.append(f"<p class=\"note\">{_e(face.label)} is not in {_e(run.label)}.</p>")
                continue
            both = np.isfinite(face.scores) & np.isfinite(other.scores)
            flips = (face.scores >= threshold) != (other.scores >= threshold)
            gap = np.abs(face.scores - other.scores)
            rows = []
            for k, au in enumerate(first.summary.au_names):
                n = int(both[:, k].sum())
                changed = int((flips[:, k] & both[:, k]).sum())
                mean = float(gap[both[:, k], k].mean()) if n else None
                worst = float(gap[both[:, k], k].max()) if n else None
                rows.append(f"<tr><td>{_au_name(au)}</td><td class=\"number{' differs' if changed else ''}\">{changed} "
                            f"of {n}</td><td class=\"number\">{_number(mean)}</td><td class=\"number\">"
                            f"{_number(worst)}</td></tr>")
            parts.append(f"<table class=\"differences\"><caption>{_e(run.label)} against {_e(first.label)}, "
                         f"{_e(face.label)}</caption><tr><th>AU</th><th>frames active in one only</th>"
                         f"<th>mean |score difference|</th><th>largest</th></tr>{''.join(rows)}</table>")
            cells = encode_differences(thin(face.scores, per_column), thin(other.scores, per_column))
            parts.append(_panel(f"|score difference|, {run.label} against {first.label}: {face.label} "
                                "(white: none, purple: 1 or more)", cells, first.summary.au_names, columns, "diff",
                                face.label))
    return "\n".join(parts)


def _provenance_section(runs: list[Run]) -> str:
    header = "".join(f"<th>{_e(run.label)}</th>" for run in runs) if len(runs) > 1 else "<th></th>"
    rows = []
    for key, name in PROVENANCE_FIELDS + (("untrained", "untrained model"), ("complete", "input read to its end")):
        values = [run.provenance.get(key) for run in runs]
        cells = "".join(f"<td>{_fact(key, v)}</td>" for v in values)
        rows.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    return (f"<h2>What made these results</h2><table class=\"provenance\"><tr><th></th>{header}</tr>"
            f"{''.join(rows)}</table>")


def _fact(key: str, value) -> str:
    if value is None:
        return "<span class=\"note\">not recorded</span>"
    if key == "untrained":
        return "<b class=\"differs\">YES: outputs meaningless</b>" if value else "no"
    if key == "complete":
        return "yes" if value else "<b class=\"differs\">NO: incomplete run</b>"
    if isinstance(value, float):
        return _e(f"{value:.4g}")
    if isinstance(value, dict):  # the window plan: "mode centred, frames 4, hop 2, ..."
        return _e(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items()))
    return _e(value)


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
