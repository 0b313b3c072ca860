"""mdhr-report: the HTML report of results already written (mdhr-run or
mdhr-batch CSVs), alone or compared."""
from __future__ import annotations

from pathlib import Path

import click

from mdhr.aus import DECISION_THRESHOLD
from mdhr.errors import MDHRError
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.checks import check_threshold
from mdhr_runtime.cli.common import run_reporting_errors, say, verbose_option
from mdhr_runtime.files.outputs import check_run_paths, remove_stale_staging
from mdhr_runtime.results.overlay import check_overlay_input
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.report import video_beside, write_report


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("csvs", metavar="CSV...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--html", "html_path", required=True, type=click.Path(path_type=Path), help="The report to write.")
@click.option("--video", type=click.Path(path_type=Path),
              help="The video the CSVs were scored from: the report then shows it annotated with the first CSV.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="The bundle that made the CSVs: the report then names its dataset and backbone and says "
                   "whether it is untrained (a CSV does not record them).")
@click.option("--threshold", type=float, help="The decision threshold the CSVs used (default: the bundle's, 0.5).")
@verbose_option
def main(csvs, html_path, video, model_dir, threshold, verbose):
    """Write an HTML report of CSV (written by mdhr-run or mdhr-batch, with
    or without face_id).  Two or more CSVs of the same video (two backends,
    official against centred windows) are shown one under the other with
    their differences per AU.

    More: docs/results.md.

    \b
    Example:
      mdhr-report interview.csv --video interview.mp4 --html interview.html
      mdhr-report onnx.csv int8.csv --html compare.html
    """
    def work():
        inputs = {f"CSV {path}": path for path in csvs}
        inputs.update({"--video": video, "--model": model_dir})
        outputs = {"--html": html_path, "--html's video": video_beside(html_path) if video else None}
        check_run_paths(outputs, inputs)
        if video is not None:
            check_overlay_input(video)
        for path in csvs:
            if path.is_dir():
                raise MDHRError(f"CSV {path} is a folder; give the CSV files written by mdhr-run or mdhr-batch")
        if threshold is not None:
            check_threshold(threshold)
        facts, cut = {}, DECISION_THRESHOLD
        if model_dir is not None:
            bundle = load_bundle(model_dir)
            facts = {"bundle": str(model_dir), "dataset": bundle.dataset, "backbone": bundle.backbone,
                     "untrained": bundle.untrained}
            cut = bundle.threshold
        tables = [read_csv(path, cut if threshold is None else threshold) for path in csvs]
        labels = _labels(csvs)
        remove_stale_staging(html_path, say)
        provenance = {"input": str(video or csvs[0]), **facts}
        info = write_report(tables[0], video, html_path, provenance, label=labels[0],
                            others=[(label, table, {"input": str(path), **facts})
                                    for label, table, path in zip(labels[1:], tables[1:], csvs[1:])])
        say(f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; video: {info.video})")

    run_reporting_errors(work, verbose)


def _labels(paths: tuple[Path, ...]) -> list[str]:
    """Each CSV's name, or its path where names repeat."""
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]
