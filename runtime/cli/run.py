"""mdhr-run: AU occurrence per frame of a video, as an OpenFace-style CSV.
The work is ``mdhr_runtime.runs.video.run_video``; this maps flags to it."""
from __future__ import annotations

import click

from mdhr_runtime.cli import scoring
from mdhr_runtime.cli.common import (
    EXIT_INCOMPLETE_INPUT,
    OUTPUT_FILE,
    PATH,
    mdhr_command,
    run_reporting_errors,
    say,
    verbose_option,
)
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.files.outputs import is_stdout
from mdhr_runtime.runs.video import RunOptions, RunOutcome, run_video


@mdhr_command("running.md", [
    "mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --plot interview.png",
    "mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --report interview.html",
    "mdhr-run --camera 0 --model bundles/bp4d --out live.csv"])
@click.argument("input_path", metavar="INPUT", required=False, type=PATH)
@click.option("--model", "model_dir", required=True, type=PATH,
              help="Bundle folder written by mdhr-export.")
@click.option("--out", type=OUTPUT_FILE,
              help="CSV to write: one row per frame (frame, timestamp, success, confidence, face box, "
                   "AUxx_score, AUxx_c, then landmarks, head pose, face size and quality flags); - for standard "
                   "output (every message goes to standard error). "
                   "Required for files; optional with --camera.")
@click.option("--camera", metavar="N|URL", help="Score a live source instead of INPUT: a camera index or "
              "any stream OpenCV opens. One status line updates live; Ctrl-C stops and writes --out.")
@scoring.window_options
@click.option("--json", "json_out", type=OUTPUT_FILE,
              help="Also write the results as JSON (- for standard output, with --out a file).")
@click.option("--plot", type=OUTPUT_FILE, help="Also draw the AU activations over time (PNG).")
@click.option("--overlay", type=OUTPUT_FILE, help="Also write the video annotated with boxes, "
              "face ids and AU bars (H.264 MP4, plays in browsers).")
@click.option("--report", type=OUTPUT_FILE, help="Also write a self-contained HTML report: "
              "annotated video, AU timeline per face, statistics and provenance.")
@scoring.backend_option("auto: a TensorRT engine on a GPU when the bundle has one, else a reduced-precision CPU "
                "runner (int8, openvino-bf16) that passed its agreement gate at export, else ONNX Runtime. "
                "openvino, openvino-bf16 and int8 run the whole model, in --windows official.")
@click.option("--aligned", is_flag=True, help="INPUT frames are already aligned face crops: skip face detection.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's, 0.5).")
@scoring.face_options
@scoring.face_detector_option
@scoring.quality_options
@verbose_option
def main(input_path, model_dir, out, camera, windows, hop, json_out, plot, overlay, report, backend, aligned,
         threshold, faces, min_face, face_detector, quality_flags, verbose):
    """Recognise facial action units in every frame of INPUT (a video file,
    a folder of frames, or an image), or live from --camera.

    Frames without a face get success 0 and empty AU cells. Paths are
    checked before any work; the outputs are written together, only once
    every one of them succeeded. A video that ends early (truncated or
    damaged: the decoder failed, or its last frame ends short of the
    duration the container declares) still gets its rows written, and the
    command exits with status 4 (the JSON says complete: false and why). A
    live source is written (whole) when it ends or on Ctrl-C.

    Manual: mdhr-run --docs prints docs/running.md (installed with the package).
    """
    def options() -> RunOptions:  # made inside the error reporting: QualityOptions checks its thresholds
        return RunOptions(model=model_dir, input=input_path, camera=camera, out=out, json=json_out, plot=plot,
                          overlay=overlay, report=report, windows=windows, hop=hop, backend=backend, aligned=aligned,
                          threshold=threshold, faces=faces, min_face=min_face, face_detector=face_detector,
                          quality=QualityOptions(**quality_flags))

    run_reporting_errors(lambda: _run(options(), verbose), verbose, FLAGS)


# RunOptions' fields that this command's options name otherwise
FLAGS = {"input": "INPUT", "model": "--model", "json": "--json"}


def _run(options: RunOptions, verbose: bool) -> int:
    bars = []

    def progress(total: int | None):
        if total is not None and total <= 1:  # one image: no bar, and no tqdm import in its start-up
            return lambda done: None
        from tqdm import tqdm

        name = options.input.name if options.input else ""
        bars.append(tqdm(total=total, unit="frame", desc=name, disable=None, leave=False))
        return lambda done: bars[-1].update(done - bars[-1].n)

    def status(line: str) -> None:
        click.echo("\r" + line[:150].ljust(150), nl=False, err=True)

    try:
        outcome = run_video(options, notify=say, progress=progress, status=status, verbose=verbose)
    finally:
        for bar in bars:
            bar.close()
    return report_run(options, outcome)


def report_run(options: RunOptions, outcome: RunOutcome) -> int:
    """The outcome in a line or two, and mdhr-run's exit code."""
    table = outcome.table
    if options.camera is not None:
        say("\nstopped (Ctrl-C)" if outcome.interrupted else "\nsource ended")
        if options.out is None:
            say(f"{len(table)} frames scored; nothing written (no --out)")
            return 0
    where = "standard output" if is_stdout(options.out) else options.out
    if not outcome.complete:
        say(f"error: {options.input} was not read to its end: {table.shortfall}; the file is truncated or "
            f"damaged, and the {len(table)} frames read were written to {where}")
        return EXIT_INCOMPLETE_INPUT
    if table.other_faces:
        say(f"note: up to {table.other_faces} other face(s) were in the frame besides the one scored; "
            "--faces all scores every face")
    found = outcome.frames_with_face
    people = f", {len(table.ids())} face track(s)" if table.face_ids else ""
    say(f"wrote {where}: {outcome.frames} frames, face found in {found}{people}"
        + ("" if found else " (no face anywhere: AU cells are empty)"))
    return 0
