"""mdhr-batch: AU tables for a corpus of videos, on Ray."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mdhr_runtime.batch.jobs import BatchOptions
from mdhr_runtime.cli import scoring
from mdhr_runtime.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    OUTPUT_FILE,
    PATH,
    Terminated,
    mdhr_command,
    run_reporting_errors,
    say,
    verbose_option,
)
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.runs.corpus import CorpusOutcome, run_corpus


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    return value


@mdhr_command("corpora.md", [
    "mdhr-batch corpus/ --model bundles/bp4d --out results/",
    "mdhr-batch @videos.txt --model bundles/bp4d --out results/ --address auto"])
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--model", "model_dir", required=True, type=PATH,
              help="Bundle folder written by mdhr-export.")
@click.option("--out", "out_dir", required=True, type=PATH,
              help="Output folder: one CSV per video (mirroring the input names) and summary.csv.")
@click.option("--address", help="Join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local "
              "one sized to this machine.")
@click.option("--workers", type=int, callback=_positive,
              help="Workers (one model each). Default: the cluster's CPUs / --threads-per-worker.")
@click.option("--threads-per-worker", type=int, default=1, show_default=True, callback=_positive,
              help="ONNX Runtime threads (and Ray CPUs) per worker.")
@click.option("--segment-frames", type=int, callback=_positive,
              help="Cut videos longer than this into segments of about this many frames, scored in "
                   "parallel and stitched into one CSV (equal to a whole run within 1e-3; not with --faces all, "
                   "which scores whole videos).")
@scoring.window_options
@scoring.backend_option("auto: a TensorRT engine on a GPU when the bundle has one, else ONNX Runtime.")
@scoring.face_options
@click.option("--json", "json_out", type=OUTPUT_FILE,
              help="Also write the job's summary as JSON (- for standard output), as mdhr-run's --json.")
@click.option("--report", type=OUTPUT_FILE,
              help="Also write an HTML report beside each CSV (OUT/<name>.html) and the corpus's index page "
                   "here (e.g. OUT/index.html), one row per video with a link to its report.")
@scoring.quality_options
@verbose_option
def main(inputs, model_dir, out_dir, address, workers, threads_per_worker, segment_frames, windows, hop, backend,
         faces, min_face, json_out, report, quality_flags, verbose):
    """Recognise facial action units in every frame of many videos.

    INPUT is any mix of video files, folders (searched for videos), glob
    patterns ('data/*/*.mp4', quoted) and @list.txt (one path a line).

    Each video gets OUT/<its path below the inputs' common folder>.csv,
    written whole or not at all; OUT/summary.csv holds one row per video
    (status ok / partial / failed / skipped, with the reason, the Ray node
    that scored it and its retries) and is rewritten as videos finish;
    jobs sharing an --out merge their rows. mdhr-batch never replaces a
    file it did not write. A rerun with the same --out skips videos
    already done with the same bundle. Exit status 0 when every video is
    ok, 5 when any failed or was partial (see summary.csv), 2 for a bad
    argument or cluster (nothing done).

    Manual: mdhr-batch --docs prints docs/corpora.md (installed with the package).
    """
    options = BatchOptions(bundle_dir=model_dir, out_dir=out_dir, backend=backend, workers=workers,
                           threads_per_worker=threads_per_worker, segment_frames=segment_frames, address=address,
                           faces=faces, min_face=min_face, windows=windows, hop=hop,
                           quality=QualityOptions(**quality_flags), report=report)
    run_reporting_errors(lambda: _run(list(inputs), options, json_out), verbose, FLAGS)


# BatchOptions' fields that this command's options name otherwise
FLAGS = {"bundle_dir": "--model"}


def _run(inputs: list[str], options: BatchOptions, json_out: Path | None) -> int:
    jobs = []
    try:
        outcome = run_corpus(inputs, options, json_out, notify=say, on_job=jobs.append)
    except (KeyboardInterrupt, Terminated) as stop:
        _leave(options.out_dir, isinstance(stop, Terminated) or (jobs and jobs[0].terminated))
    return _summarise(outcome)


def _leave(out_dir: Path, terminated: bool) -> None:
    say(f"{'terminated' if terminated else 'interrupted'}: the videos finished so far are in "
        f"{out_dir / 'summary.csv'}, the ones in progress were not written; run the same command again "
        "to do the rest")
    # Ray is shut down and every file is whole or gone; leave without the
    # interpreter's exit handlers, where Ray's native threads can crash the
    # process (seen: SIGSEGV after an interrupt) and turn 130/143 into -11.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


def _summarise(outcome: CorpusOutcome) -> int:
    """The job's outcome in a few lines; the exit code."""
    rows = outcome.rows
    say(f"{len(rows)} videos: {outcome.ok} ok, {len(rows) - outcome.ok} not "
        f"({sum(r.status == 'skipped' for r in rows)} skipped as done before); summary in "
        f"{outcome.out_dir / 'summary.csv'}")
    for row in rows:
        if not row.fine:
            say(f"  {row.status}: {row.path}: {row.error}")
        elif row.frames_with_face == 0:  # done, as mdhr-run says (docs/errors.md)
            say(f"  note: {row.path}: no face in any of its {row.frames} frames (AU cells are empty)")
    return 0 if outcome.all_ok else EXIT_SOME_FAILED
