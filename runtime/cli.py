"""mdhr-run: AU occurrence per frame of a video, as an OpenFace-style CSV."""
from __future__ import annotations

from pathlib import Path

import click

from mdhr_runtime.cli_common import run_reporting_errors, verbose_option
from mdhr_runtime.runners import BACKENDS
from mdhr_runtime.windows import DEFAULT_WINDOWS, WINDOW_MODES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder written by mdhr-export.")
@click.option("--out", type=click.Path(path_type=Path),
              help="CSV to write: one row per frame (frame, timestamp, success, confidence, face box, "
                   "AUxx_score, AUxx_c). Required for files; optional with --camera.")
@click.option("--camera", metavar="N|URL", help="Score a live source instead of INPUT: a camera index or "
              "any stream OpenCV opens. One status line updates live; Ctrl-C stops and writes --out.")
@click.option("--windows", type=click.Choice(WINDOW_MODES), default=DEFAULT_WINDOWS, show_default=True,
              help="centred: each frame scored near the middle of its own window (no jumps at window "
                   "edges); official: the paper's non-overlapping windows.")
@click.option("--hop", type=int, help="Centred windows: frames between window starts (default T/2).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the results as JSON.")
@click.option("--plot", type=click.Path(path_type=Path), help="Also draw the AU activations over time (PNG).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: a TensorRT engine on a GPU when the bundle has one, else ONNX Runtime.")
@click.option("--aligned", is_flag=True, help="INPUT frames are already aligned face crops: skip face detection.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's, 0.5).")
@click.option("--face-detector", type=click.Choice(["mtcnn", "haar"]), default="mtcnn", show_default=True,
              help="mtcnn: more accurate, with landmarks for levelling the crop; haar: OpenCV cascade.")
@verbose_option
def main(input_path, model_dir, out, camera, windows, hop, json_out, plot, backend, aligned, threshold,
         face_detector, verbose):
    """Recognise facial action units in every frame of INPUT (a video file,
    a folder of frames, or an image), or live from --camera.

    \b
    Example:
      mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --plot interview.png
      mdhr-run --camera 0 --model bundles/bp4d --out live.csv

    Frames without a face get success 0 and empty AU cells. Nothing is
    written unless the whole input was processed; a live source is written
    (whole) when it ends or on Ctrl-C.
    """
    from tqdm import tqdm

    from mdhr.errors import MDHRError
    from mdhr_runtime.detector import AUDetector
    from mdhr_runtime.frames import FrameSource
    from mdhr_runtime.windows import WindowPlan

    def work():
        if (input_path is None) == (camera is None):
            raise MDHRError("give either INPUT (a video, folder or image) or --camera N|URL")
        if camera is None and out is None:
            raise MDHRError("--out is required: the CSV to write")
        if camera is not None and aligned:
            raise MDHRError("--aligned applies to files of face crops, not to --camera")
        with AUDetector(model_dir, backend=backend, threshold=threshold, face_detector=face_detector) as detector:
            if detector.bundle.untrained:
                click.echo("warning: this bundle holds an UNTRAINED model (exported with --random-init); "
                           "its AU outputs are meaningless", err=True)
            if verbose:
                click.echo(f"backend: {detector.why}", err=True)
            plan = WindowPlan.make(windows, detector.bundle.frames, hop)
            if camera is not None:
                from mdhr_runtime.live import run_live

                live = run_live(detector, camera, windows, hop, status=status)
                click.echo("\nstopped (Ctrl-C)" if live.interrupted else "\nsource ended", err=True)
                table = live.table
                if out is None:
                    click.echo(f"{len(table)} frames scored; nothing written (no --out)", err=True)
                    return
            else:
                total = FrameSource(input_path).frame_count
                with tqdm(total=total, unit="frame", desc=input_path.name, disable=None, leave=False) as bar:
                    table = detector.predict_video(input_path, aligned=aligned, windows=windows, hop=hop,
                                                   progress=lambda done: bar.update(done - bar.n))
            if len(table) == 0:
                raise MDHRError(f"no frame could be read from {camera}; nothing written")
            table.write_csv(out)
            metadata = {"input": str(input_path or camera), "bundle": str(model_dir),
                        "windows": plan.describe(),
                        "backend": detector.backend if windows == "official" else detector.stage_runner.name,
                        "dataset": detector.bundle.dataset, "backbone": detector.bundle.backbone,
                        "untrained": detector.bundle.untrained}
            if json_out:
                table.write_json(json_out, metadata)
            if plot:
                title = f"{input_path.name if input_path else camera}: MDHR {detector.bundle.dataset}" + (
                    " (UNTRAINED)" if detector.bundle.untrained else "")
                table.plot_timeline(plot, title=title)
        found = sum(row.face.success for row in table.rows)
        click.echo(f"wrote {out}: {len(table)} frames, face found in {found}"
                   + ("" if found else " (no face anywhere: AU cells are empty)"), err=True)

    def status(line: str) -> None:
        click.echo("\r" + line[:150].ljust(150), nl=False, err=True)

    run_reporting_errors(work, verbose)
