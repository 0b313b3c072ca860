"""Report on results already written: the job behind ``mdhr-report``.

``report_csvs`` reads CSVs that ``mdhr-run`` or ``mdhr-batch`` wrote (with
the run facts written beside them), checks everything before any output,
and writes one HTML report: one run, or several runs of the same video
compared."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from mdhr.aus import DECISION_THRESHOLD
from mdhr.errors import InputError, param
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.checks import check_threshold
from mdhr_runtime.files.outputs import check_room, check_run_paths, remove_stale_staging
from mdhr_runtime.results.overlay import check_overlay_input
from mdhr_runtime.results.provenance import Provenance, read_facts
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.report import ReportInfo, video_beside, write_report


def report_csvs(csvs: Sequence[Path], html: Path, video: Path | None = None, model: Path | None = None,
                threshold: float | None = None, notify: Callable[[str], None] = lambda line: None) -> ReportInfo:
    """The report of ``csvs`` at ``html``; ``video`` shows the first run
    annotated; ``model`` names the bundle where the run facts are missing;
    ``threshold`` overrides the recorded one."""
    csvs = [Path(p) for p in csvs]
    inputs = {f"CSV {path}": path for path in csvs}
    inputs.update({param("video"): video, param("model"): model})
    outputs = {param("html"): html, param("html") + "'s video": video_beside(html) if video else None}
    check_run_paths(outputs, inputs)
    if video is not None:
        check_overlay_input(video, param("video"))
    for path in csvs:
        if path.is_dir():
            raise InputError(f"CSV {path} is a folder; give the CSV files written by mdhr-run or mdhr-batch")
    if threshold is not None:
        check_threshold(threshold)
    given, cut = Provenance(), DECISION_THRESHOLD
    if model is not None:
        bundle = load_bundle(model)
        given = Provenance(bundle=str(model), dataset=bundle.dataset, backbone=bundle.backbone,
                           untrained=bundle.untrained)
        cut = bundle.threshold
    runs = [_recorded(path, given, threshold, cut) for path in csvs]
    tables = [read_csv(path, facts.threshold) for path, facts in zip(csvs, runs)]
    check_room(outputs, len(tables[0]))
    labels = _labels(csvs)
    remove_stale_staging(html, notify)
    first = runs[0].replace(input=str(video)) if video is not None else runs[0]
    return write_report(tables[0], video, html, first, label=labels[0],
                        others=list(zip(labels[1:], tables[1:], runs[1:])))


def _recorded(path: Path, given: Provenance, threshold: float | None, fallback: float) -> Provenance:
    """What made the CSV at ``path``: the run facts written beside it, with
    what the model gives taking precedence; the threshold is the one asked
    for, else the one recorded, else ``fallback`` (the bundle's, or 0.5)."""
    facts = (read_facts(path) or Provenance(input=str(path))).merged(given)
    if threshold is None:
        threshold = fallback if facts.threshold is None else facts.threshold
    return facts.replace(threshold=threshold)


def _labels(paths: list[Path]) -> list[str]:
    """Each CSV's name, or its path where names repeat."""
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]
