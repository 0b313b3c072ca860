"""mdhr-report: the HTML report of results already written (mdhr-run or
mdhr-batch CSVs), alone or compared."""
from __future__ import annotations

from pathlib import Path

import click

from mdhr.aus import DECISION_THRESHOLD
from mdhr.errors import MDHRError
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.checks import check_threshold
from mdhr_runtime.cli.common import OUTPUT_FILE, PATH, mdhr_command, run_reporting_errors, say, verbose_option
from mdhr_runtime.files.outputs import check_room, check_run_paths, remove_stale_staging
from mdhr_runtime.results.overlay import check_overlay_input
from mdhr_runtime.results.provenance import Provenance, read_facts
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.report import video_beside, write_report


@mdhr_command("results.md", [
    "mdhr-report interview.csv --video interview.mp4 --html interview.html",
    "mdhr-report onnx.csv int8.csv --html compare.html"])
@click.argument("csvs", metavar="CSV...", nargs=-1, required=True, type=PATH)
@click.option("--html", "html_path", required=True, type=OUTPUT_FILE, help="The report to write.")
@click.option("--video", type=PATH,
              help="The video the CSVs were scored from: the report then shows it annotated with the first CSV.")
@click.option("--model", "model_dir", type=PATH,
              help="The bundle that made the CSVs, where their run facts (NAME.run.json, written beside each "
                   "CSV by mdhr-run and mdhr-batch) are missing: the report then names its dataset and "
                   "backbone and says whether it is untrained.")
@click.option("--threshold", type=float, help="The decision threshold to show (default: the one the run facts "
              "record, else the bundle's, else 0.5).")
@verbose_option
def main(csvs, html_path, video, model_dir, threshold, verbose):
    """Write an HTML report of CSV (written by mdhr-run or mdhr-batch, with
    or without face_id).  Two or more CSVs of the same video (two backends,
    official against centred windows) are shown one under the other with
    their differences per AU.

    Manual: mdhr-report --docs prints docs/results.md (installed with the package).
    """
    def work():
        inputs = {f"CSV {path}": path for path in csvs}
        inputs.update({"--video": video, "--model": model_dir})
        outputs = {"--html": html_path, "--html's video": video_beside(html_path) if video else None}
        check_run_paths(outputs, inputs)
        if video is not None:
            check_overlay_input(video, "--video")
        for path in csvs:
            if path.is_dir():
                raise MDHRError(f"CSV {path} is a folder; give the CSV files written by mdhr-run or mdhr-batch")
        if threshold is not None:
            check_threshold(threshold)
        given, cut = Provenance(), DECISION_THRESHOLD
        if model_dir is not None:
            bundle = load_bundle(model_dir)
            given = Provenance(bundle=str(model_dir), dataset=bundle.dataset, backbone=bundle.backbone,
                               untrained=bundle.untrained)
            cut = bundle.threshold
        runs = [_recorded(path, given, threshold, cut) for path in csvs]
        tables = [read_csv(path, facts.threshold) for path, facts in zip(csvs, runs)]
        check_room(outputs, len(tables[0]))
        labels = _labels(csvs)
        remove_stale_staging(html_path, say)
        first = runs[0].replace(input=str(video)) if video is not None else runs[0]
        info = write_report(tables[0], video, html_path, first, label=labels[0],
                            others=list(zip(labels[1:], tables[1:], runs[1:])))
        say(f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; video: {info.video})")

    run_reporting_errors(work, verbose)


def _recorded(path: Path, given: Provenance, threshold: float | None, fallback: float) -> Provenance:
    """What made the CSV at ``path``: the run facts written beside it, with
    what --model gives taking precedence; the threshold is --threshold's,
    else the one recorded, else ``fallback`` (the bundle's, or 0.5)."""
    facts = (read_facts(path) or Provenance(input=str(path))).merged(given)
    if threshold is None:
        threshold = fallback if facts.threshold is None else facts.threshold
    return facts.replace(threshold=threshold)


def _labels(paths: tuple[Path, ...]) -> list[str]:
    """Each CSV's name, or its path where names repeat."""
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]
