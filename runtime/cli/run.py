"""mdhr-run: AU occurrence per frame of a video, as an OpenFace-style CSV."""
from __future__ import annotations

import time
from pathlib import Path

import click

from mdhr.errors import MDHRError
from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.backends.openvino_runner import OPENVINO_BACKENDS
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.choices import (BACKENDS, DEFAULT_FACE_DETECTOR, DEFAULT_FACES, DEFAULT_WINDOWS, FACE_DETECTORS,
                                  FACE_MODES, WINDOW_MODES)
from mdhr_runtime.cli.common import EXIT_INCOMPLETE_INPUT, run_reporting_errors, say, verbose_option
from mdhr_runtime.cli.checks import check_faces, check_threshold
from mdhr_runtime.cli.live import run_live
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.files.outputs import check_distinct, check_run_paths, is_stdout, remove_stale_staging, staged_files
from mdhr_runtime.results.overlay import check_overlay_input, render_overlay
from mdhr_runtime.results.report import report_html, video_beside
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.windows.streams import WindowPlan


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder written by mdhr-export.")
@click.option("--out", type=click.Path(path_type=Path),
              help="CSV to write: one row per frame (frame, timestamp, success, confidence, face box, "
                   "AUxx_score, AUxx_c); - for standard output (every message goes to standard error). "
                   "Required for files; optional with --camera.")
@click.option("--camera", metavar="N|URL", help="Score a live source instead of INPUT: a camera index or "
              "any stream OpenCV opens. One status line updates live; Ctrl-C stops and writes --out.")
@click.option("--windows", type=click.Choice(WINDOW_MODES), default=DEFAULT_WINDOWS, show_default=True,
              help="centred: each frame scored near the middle of its own window (no jumps at window "
                   "edges); official: the paper's non-overlapping windows.")
@click.option("--hop", type=int, help="Centred windows: frames between window starts (default T/2).")
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="Also write the results as JSON (- for standard output, with --out a file).")
@click.option("--plot", type=click.Path(path_type=Path), help="Also draw the AU activations over time (PNG).")
@click.option("--overlay", type=click.Path(path_type=Path), help="Also write the video annotated with boxes, "
              "face ids and AU bars (H.264 MP4, plays in browsers).")
@click.option("--report", type=click.Path(path_type=Path), help="Also write a self-contained HTML report: "
              "annotated video, AU timeline per face, statistics and provenance.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: a TensorRT engine on a GPU when the bundle has one, else a reduced-precision CPU "
                   "runner (int8, openvino-bf16) that passed its agreement gate at export, else ONNX Runtime. "
                   "openvino, openvino-bf16 and int8 run the whole model, in --windows official.")
@click.option("--aligned", is_flag=True, help="INPUT frames are already aligned face crops: skip face detection.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's, 0.5).")
@click.option("--faces", type=click.Choice(FACE_MODES), default=DEFAULT_FACES, show_default=True,
              help="largest: one face per frame, as the CSV always had (a note says when others were there); "
                   "all: every face, tracked with a face_id column (one row per frame and face).")
@click.option("--min-face", type=int, default=DEFAULT_MIN_FACE, show_default=True, metavar="PX",
              help="--faces all: ignore faces whose box is smaller than PX pixels.")
@click.option("--face-detector", type=click.Choice(FACE_DETECTORS), default=DEFAULT_FACE_DETECTOR, show_default=True,
              help="mtcnn: more accurate, with landmarks for levelling the crop; haar: OpenCV cascade.")
@verbose_option
def main(input_path, model_dir, out, camera, windows, hop, json_out, plot, overlay, report, backend, aligned,
         threshold, faces, min_face, face_detector, verbose):
    """Recognise facial action units in every frame of INPUT (a video file,
    a folder of frames, or an image), or live from --camera.

    Frames without a face get success 0 and empty AU cells. Paths are
    checked before any work; the outputs are written together, only once
    every one of them succeeded. A video that ends early (truncated or
    damaged: the decoder failed, or its last frame ends short of the
    duration the container declares) still gets its rows written, and the
    command exits with status 4 (the JSON says complete: false and why). A
    live source is written (whole) when it ends or on Ctrl-C.

    More: docs/running.md.

    \b
    Example:
      mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --plot interview.png
      mdhr-run interview.mp4 --model bundles/bp4d --out interview.csv --report interview.html
      mdhr-run --camera 0 --model bundles/bp4d --out live.csv
    """
    from tqdm import tqdm

    def check():
        if (input_path is None) == (camera is None):
            raise MDHRError("give either INPUT (a video, folder or image) or --camera N|URL")
        if camera is None and out is None:
            raise MDHRError("--out is required: the CSV to write (- for standard output)")
        if input_path is not None and is_stdout(input_path):
            raise MDHRError("INPUT - (a video on standard input) is not supported: save it to a file and give "
                            "its path (for a file named -, write ./-)")
        if is_stdout(plot):
            raise MDHRError("--plot - : a PNG is not written to standard output; give a file name")
        if camera is not None and aligned:
            raise MDHRError("--aligned applies to files of face crops, not to --camera")
        if threshold is not None:
            check_threshold(threshold)
        check_faces(faces, min_face, aligned)
        if camera is not None and (overlay or report):
            raise MDHRError("--overlay and --report annotate a video file: give INPUT instead of --camera")
        outputs = {"--out": out, "--json": json_out, "--plot": plot, "--overlay": overlay, "--report": report,
                   "--report's video": video_beside(report) if report else None}
        check_run_paths(outputs, {"INPUT": input_path})
        if overlay or report:
            check_overlay_input(input_path)
        # the card only: says what is wrong with a bundle, or --hop, before any model loads
        bundle = load_bundle(model_dir)
        WindowPlan.make(windows, bundle.frames, hop)
        check_distinct(outputs, {"--model": model_dir})
        for target in (out, json_out, plot, overlay, report):
            if target is not None and not is_stdout(target):
                remove_stale_staging(target, say)
        # the input's header (and, for a folder, every image's): a bad one is named before the model loads
        return bundle, None if input_path is None else FrameSource(input_path)

    def work():
        bundle, source = check()  # both read once: the run uses them
        with AUDetector(bundle, backend=backend, threshold=threshold, face_detector=face_detector) as detector:
            if detector.bundle.untrained:
                click.echo("warning: this bundle holds an UNTRAINED model (exported with --random-init); "
                           "its AU outputs are meaningless", err=True)
            if verbose:
                click.echo(f"backend: {detector.why}", err=True)
            warning = forced_warning(detector.bundle, backend)
            if warning:
                click.echo(warning, err=True)
            if windows == "centred" and detector.backend in OPENVINO_BACKENDS:
                click.echo(f"note: {detector.backend} runs the whole model per window (--windows official); "
                           "centred windows run the bundle's frame and clip stages on ONNX Runtime", err=True)
            plan = WindowPlan.make(windows, detector.bundle.frames, hop)
            if camera is not None:
                live = run_live(detector, camera, windows, hop, status=status, faces=faces, min_face=min_face)
                click.echo("\nstopped (Ctrl-C)" if live.interrupted else "\nsource ended", err=True)
                table = live.table
                if out is None:
                    click.echo(f"{len(table)} frames scored; nothing written (no --out)", err=True)
                    return
            else:
                started = time.perf_counter()
                with tqdm(total=source.frame_count, unit="frame", desc=input_path.name, disable=None, leave=False) as bar:
                    table = detector.predict_video(source, aligned=aligned, windows=windows, hop=hop,
                                                   faces=faces, min_face=min_face,
                                                   progress=lambda done: bar.update(done - bar.n))
                scoring_seconds = time.perf_counter() - started
            if len(table) == 0:
                raise MDHRError(f"no frame could be read from {camera}; nothing written")
            metadata = {"input": str(input_path or camera), "bundle": str(model_dir),
                        "windows": plan.describe(), "faces": faces,
                        **({"min_face": min_face} if faces == "all" else {}),
                        "backend": detector.backend if windows == "official" else detector.stage_runner.name,
                        "dataset": detector.bundle.dataset, "backbone": detector.bundle.backbone,
                        "untrained": detector.bundle.untrained}
            # a report without --overlay stages its annotated video too, so a
            # video too large to embed joins the other outputs, all or nothing
            beside = video_beside(report) if report and not overlay else None
            targets = [out, json_out, plot, overlay, report, beside]
            with staged_files(targets) as (csv_file, json_file, plot_file, overlay_file, report_file, beside_file):
                table.write_csv(csv_file)
                if json_file:
                    table.write_json(json_file, metadata)
                if plot_file:
                    title = f"{input_path.name if input_path else camera}: MDHR {detector.bundle.dataset}" + (
                        " (UNTRAINED)" if detector.bundle.untrained else "")
                    table.plot_timeline(plot_file, title=title)
                if overlay_file or beside_file:
                    render_overlay(table, input_path, overlay_file or beside_file)
                if report_file:
                    runner = detector.runner if windows == "official" else detector.stage_runner
                    facts = {**metadata, "precision": runner.precision, "video_fps": source.fps,
                             "scoring_fps": round(len({r.index for r in table.rows}) / scoring_seconds, 2)}
                    page, where_video, _ = report_html(table, report, facts, input_path, overlay_file or beside_file,
                                                       overlay_link=overlay or beside)
                    report_file.write_text(page, encoding="utf-8")
                    if beside_file and where_video == "embedded":
                        beside_file.unlink()  # embedded: nothing to place beside the report
        where = "standard output" if is_stdout(out) else out
        if not table.complete:
            say(f"error: {input_path} was not read to its end: {table.shortfall}; the file is truncated or "
                f"damaged, and the {len(table)} frames read were written to {where}")
            return EXIT_INCOMPLETE_INPUT
        if table.other_faces:
            say(f"note: up to {table.other_faces} other face(s) were in the frame besides the one scored; "
                "--faces all scores every face")
        frames = len({row.index for row in table.rows})
        found = len({row.index for row in table.rows if row.face.success})
        people = f", {len(table.ids())} face track(s)" if table.face_ids else ""
        say(f"wrote {where}: {frames} frames, face found in {found}{people}"
            + ("" if found else " (no face anywhere: AU cells are empty)"))

    def status(line: str) -> None:
        click.echo("\r" + line[:150].ljust(150), nl=False, err=True)

    run_reporting_errors(work, verbose)
