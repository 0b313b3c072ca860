"""mdhr-batch: AU tables for a corpus of videos, on Ray."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from mdhr.errors import MDHRError
from mdhr_runtime.cli.common import (EXIT_INTERRUPTED, EXIT_SOME_FAILED, EXIT_TERMINATED, Terminated,
                                     run_reporting_errors, say, verbose_option)
from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.batch.corpus import expand_inputs
from mdhr_runtime.batch.jobs import BatchJob, BatchOptions, check_out_dir
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.choices import BACKENDS, DEFAULT_FACES, DEFAULT_WINDOWS, FACE_MODES, WINDOW_MODES
from mdhr_runtime.checks import check_faces
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.files.outputs import is_stdout
from mdhr_runtime.results.index import write_corpus_reports
from mdhr_runtime.windows.streams import WindowPlan


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1, got {value}")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder written by mdhr-export.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: one CSV per video (mirroring the input names) and summary.csv.")
@click.option("--address", help="Join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local "
              "one sized to this machine.")
@click.option("--workers", type=int, callback=_positive,
              help="Workers (one model each). Default: the cluster's CPUs / --threads-per-worker.")
@click.option("--threads-per-worker", type=int, default=1, show_default=True, callback=_positive,
              help="ONNX Runtime threads (and Ray CPUs) per worker.")
@click.option("--segment-frames", type=int, callback=_positive,
              help="Cut videos longer than this into segments of about this many frames, scored in "
                   "parallel and stitched into one CSV (equal to a whole run within 1e-3).")
@click.option("--windows", type=click.Choice(WINDOW_MODES), default=DEFAULT_WINDOWS, show_default=True,
              help="As mdhr-run: centred (each frame near the middle of its own window) or official (the "
                   "paper's non-overlapping windows).")
@click.option("--hop", type=int, help="Centred windows: frames between window starts (default T/2).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: a TensorRT engine on a GPU when the bundle has one, else ONNX Runtime.")
@click.option("--faces", type=click.Choice(FACE_MODES), default=DEFAULT_FACES, show_default=True,
              help="largest: one face per frame; all: every face, with a face_id column (whole videos: "
                   "not with --segment-frames).")
@click.option("--min-face", type=int, default=DEFAULT_MIN_FACE, show_default=True, metavar="PX",
              help="--faces all: ignore faces whose box is smaller than PX pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout at the end.")
@click.option("--report", is_flag=True, help="Also write an HTML report beside each CSV (OUT/<name>.html) and "
              "OUT/index.html, one row per video with a link to its report.")
@verbose_option
def main(inputs, model_dir, out_dir, address, workers, threads_per_worker, segment_frames, windows, hop, backend,
         faces, min_face, as_json, report, verbose):
    """Recognise facial action units in every frame of many videos.

    INPUT is any mix of video files, folders (searched for videos), glob
    patterns ('data/*/*.mp4', quoted) and @list.txt (one path a line).

    Each video gets OUT/<its path below the inputs' common folder>.csv,
    written whole or not at all; OUT/summary.csv holds one row per video
    (status ok / partial / failed / skipped, with the reason) and is
    rewritten as videos finish. A rerun with the same --out skips videos
    already done with the same bundle. Exit status 0 when every video is
    ok, 5 when any failed or was partial (see summary.csv), 2 for a bad
    argument (nothing done).

    More: docs/corpora.md.

    \b
    Example:
      mdhr-batch corpus/ --model bundles/bp4d --out results/
      mdhr-batch @videos.txt --model bundles/bp4d --out results/ --address auto
    """
    def work():
        try:
            import ray  # noqa: F401
        except ImportError:
            raise MDHRError("mdhr-batch needs Ray: pip install 'mdhr-toolkit[batch]'") from None
        if is_stdout(out_dir):
            raise MDHRError("--out - : mdhr-batch writes a folder (a CSV per video and summary.csv), not standard "
                            "output; give a folder (--json prints the summary on standard output)")
        if any(is_stdout(argument) or argument == "@-" for argument in inputs):
            raise MDHRError("INPUT - (standard input) is not supported: give video files, folders, glob patterns "
                            "or @list.txt (for a file named -, write ./-)")
        check_faces(faces, min_face)
        if faces == "all" and segment_frames is not None:
            raise MDHRError("--faces all scores whole videos: face ids cannot be joined across segments yet; "
                            "drop --segment-frames (or use --faces largest)")
        WindowPlan.make(windows, load_bundle(model_dir).frames, hop)  # --hop, before any work
        check_out_dir(out_dir)
        videos = expand_inputs(list(inputs))
        if not videos:
            raise MDHRError(f"no videos found in {' '.join(inputs)}; give video files, folders of videos, "
                            "glob patterns or @list.txt")
        options = BatchOptions(bundle_dir=model_dir, out_dir=out_dir, backend=backend, workers=workers,
                               threads_per_worker=threads_per_worker, segment_frames=segment_frames,
                               address=address, faces=faces, min_face=min_face, windows=windows, hop=hop)
        job = BatchJob(videos, options, say)  # loads and hashes the bundle: refuses a bad one here
        warning = forced_warning(load_bundle(model_dir), backend)
        if warning:
            say(warning)
        try:
            rows = job.run()
        except (KeyboardInterrupt, Terminated) as stop:
            terminated = isinstance(stop, Terminated) or job.terminated
            say(f"{'terminated' if terminated else 'interrupted'}: the videos finished so far are in "
                f"{out_dir / 'summary.csv'}, the ones in progress were not written; run the same command again "
                "to do the rest")
            # Ray is shut down and every file is whole or gone; leave without
            # the interpreter's exit handlers, where Ray's native threads can
            # crash the process (seen: SIGSEGV after an interrupt) and turn
            # 130/143 into -11.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        if report:
            bundle = load_bundle(model_dir)
            chosen = backend + (" (chosen per worker)" if backend == "auto" else "")
            write_corpus_reports(rows, out_dir, {
                "bundle": str(model_dir), "dataset": bundle.dataset, "backbone": bundle.backbone,
                "untrained": bundle.untrained, "backend": chosen, "windows": "official", "faces": faces,
                "threshold": bundle.threshold}, say)
        ok = sum(r.fine for r in rows)
        say(f"{len(rows)} videos: {ok} ok, {len(rows) - ok} not ({sum(r.status == 'skipped' for r in rows)} "
            f"skipped as done before); summary in {out_dir / 'summary.csv'}")
        for row in rows:
            if not row.fine:
                say(f"  {row.status}: {row.path}: {row.error}")
        if as_json:
            click.echo(json.dumps({"out": str(out_dir), "videos": len(rows), "ok": ok,
                                   "tasks_run": job.work_done, "rows": [asdict(r) for r in rows]}, indent=1))
        return 0 if ok == len(rows) else EXIT_SOME_FAILED

    run_reporting_errors(work, verbose)
