"""mdhr-report: the HTML report of results already written (mdhr-run or
mdhr-batch CSVs), alone or compared.  The work is
``mdhr_runtime.runs.report.report_csvs``; this maps flags to it."""
from __future__ import annotations

import click

from mdhr_runtime.cli.common import OUTPUT_FILE, PATH, mdhr_command, run_reporting_errors, say, verbose_option
from mdhr_runtime.runs.report import report_csvs


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
        info = report_csvs(list(csvs), html_path, video, model_dir, threshold, notify=say)
        say(f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; video: {info.video})")

    run_reporting_errors(work, verbose, FLAGS)


# report_csvs's parameters that this command's options name otherwise
FLAGS = {"html": "--html", "model": "--model"}
