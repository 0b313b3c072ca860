"""mdhr-run: AU occurrence per frame of a video, as an OpenFace-style CSV."""
from __future__ import annotations

from pathlib import Path

import click

from mdhr_runtime.cli_common import run_reporting_errors, verbose_option
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

    Frames without a face get success 0 and empty AU cells. Nothing is
    written unless the whole input was processed.
    """
    from tqdm import tqdm

    from mdhr_runtime.detector import AUDetector
    from mdhr_runtime.frames import FrameSource

    def work():
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
            table.write_csv(out)
            metadata = {"input": str(input_path), "bundle": str(model_dir), "backend": detector.backend,
                        "dataset": detector.bundle.dataset, "backbone": detector.bundle.backbone,
                        "untrained": detector.bundle.untrained}
            if json_out:
                table.write_json(json_out, metadata)
            if plot:
                title = f"{input_path.name}: MDHR {detector.bundle.dataset}" + (
                    " (UNTRAINED)" if detector.bundle.untrained else "")
                table.plot_timeline(plot, title=title)
        found = sum(row.face.success for row in table.rows)
        click.echo(f"wrote {out}: {len(table)} frames, face found in {found}"
                   + ("" if found else " (no face anywhere: AU cells are empty)"), err=True)

    run_reporting_errors(work, verbose)
