"""mdhr-run: AU occurrence per frame of a video, as an OpenFace-style CSV."""
from __future__ import annotations

from pathlib import Path

import click

from mdhr_runtime.cli_common import EXIT_INCOMPLETE_INPUT, run_reporting_errors, say, verbose_option
from mdhr_runtime.runners import BACKENDS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder written by mdhr-export.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="CSV to write: one row per frame (frame, timestamp, success, confidence, face box, "
                   "AUxx_score, AUxx_c).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the results as JSON.")
@click.option("--plot", type=click.Path(path_type=Path), help="Also draw the AU activations over time (PNG).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: a TensorRT engine on a GPU when the bundle has one, else ONNX Runtime.")
@click.option("--aligned", is_flag=True, help="INPUT frames are already aligned face crops: skip face detection.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's, 0.5).")
@click.option("--face-detector", type=click.Choice(["mtcnn", "haar"]), default="mtcnn", show_default=True,
              help="mtcnn: more accurate, with landmarks for levelling the crop; haar: OpenCV cascade.")
@verbose_option
def main(input_path, model_dir, out, json_out, plot, backend, aligned, threshold, face_detector, verbose):
    """Recognise facial action units in every frame of INPUT (a video file,
    a folder of frames, or an image).

    \b
    Example:
      mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --plot interview.png

    Frames without a face get success 0 and empty AU cells. Paths are
    checked before any work; the outputs are written together, only once
    every one of them succeeded. A video that ends early (truncated or
    damaged) still gets its rows written, and the command exits with
    status 4 (the JSON says complete: false).
    """
    from tqdm import tqdm

    from mdhr_runtime.bundle import load_bundle
    from mdhr_runtime.detector import AUDetector, check_threshold
    from mdhr_runtime.frames import FrameSource
    from mdhr_runtime.outputs import check_distinct, check_run_paths, remove_stale_staging, staged_files

    def check():
        if threshold is not None:
            check_threshold(threshold)
        outputs = {"--out": out, "--json": json_out, "--plot": plot}
        check_run_paths(outputs, {"INPUT": input_path})
        load_bundle(model_dir)  # its card only: says what is wrong with a bundle before any model loads
        check_distinct(outputs, {"--model": model_dir})
        for target in (out, json_out, plot):
            if target is not None:
                remove_stale_staging(target, say)

    def work():
        check()
        with AUDetector(model_dir, backend=backend, threshold=threshold, face_detector=face_detector) as detector:
            if detector.bundle.untrained:
                click.echo("warning: this bundle holds an UNTRAINED model (exported with --random-init); "
                           "its AU outputs are meaningless", err=True)
            if verbose:
                click.echo(f"backend: {detector.why}", err=True)
            total = FrameSource(input_path).frame_count
            with tqdm(total=total, unit="frame", desc=input_path.name, disable=None, leave=False) as bar:
                table = detector.predict_video(input_path, aligned=aligned,
                                               progress=lambda done: bar.update(done - bar.n))
            metadata = {"input": str(input_path), "bundle": str(model_dir), "backend": detector.backend,
                        "dataset": detector.bundle.dataset, "backbone": detector.bundle.backbone,
                        "untrained": detector.bundle.untrained}
            with staged_files([out, json_out, plot]) as (csv_file, json_file, plot_file):
                table.write_csv(csv_file)
                if json_file:
                    table.write_json(json_file, metadata)
                if plot_file:
                    title = f"{input_path.name}: MDHR {detector.bundle.dataset}" + (
                        " (UNTRAINED)" if detector.bundle.untrained else "")
                    table.plot_timeline(plot_file, title=title)
        if not table.complete:
            say(f"error: read {len(table)} of {table.frames_declared} frames: the file is truncated or damaged "
                f"({input_path}); the {len(table)} rows read were written to {out}")
            return EXIT_INCOMPLETE_INPUT
        found = sum(row.face.success for row in table.rows)
        say(f"wrote {out}: {len(table)} frames, face found in {found}"
            + ("" if found else " (no face anywhere: AU cells are empty)"))

    run_reporting_errors(work, verbose)
