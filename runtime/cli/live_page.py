"""mdhr-live: a page that scores the browser's camera as you watch."""
from __future__ import annotations

import threading

import click

from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.checks import check_faces, check_threshold
from mdhr_runtime.choices import (
    BACKENDS,
    DEFAULT_FACE_DETECTOR,
    DEFAULT_FACES,
    DEFAULT_WINDOWS,
    FACE_DETECTORS,
    FACE_MODES,
    WINDOW_MODES,
)
from mdhr_runtime.cli.common import (
    PATH,
    mdhr_command,
    quality_options,
    run_reporting_errors,
    say,
    verbose_option,
)
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.live.lsl import AUOutlet
from mdhr_runtime.live.lsl import lsl as lsl_module
from mdhr_runtime.live.server import LiveServer, aiohttp_web, bind
from mdhr_runtime.live.session import LiveOptions
from mdhr_runtime.windows.streams import WindowPlan


@mdhr_command("live.md", ["mdhr-live --model bundles/bp4d", "mdhr-live --model bundles/bp4d --faces all --port 8765"])
@click.option("--model", "model_dir", required=True, type=PATH,
              help="Bundle folder written by mdhr-export.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Browsers give cameras only to localhost or HTTPS pages, so another "
                   "address needs a tunnel or a browser told to trust it; the token in the URL guards it.")
@click.option("--port", type=int, default=0, show_default=True, help="Port to listen on; 0 chooses a free one.")
@click.option("--faces", type=click.Choice(FACE_MODES), default=DEFAULT_FACES, show_default=True,
              help="largest: one face; all: every face, each with its own bars and face_id.")
@click.option("--min-face", type=int, default=DEFAULT_MIN_FACE, show_default=True, metavar="PX",
              help="--faces all: ignore faces whose box is smaller than PX pixels.")
@click.option("--windows", type=click.Choice(WINDOW_MODES), default=DEFAULT_WINDOWS, show_default=True,
              help="As mdhr-run: centred (each frame near the middle of its window) or official.")
@click.option("--hop", type=int, help="Centred windows: frames between window starts (default 1: every frame "
              "at the middle of its window, scores without a period).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="As mdhr-run.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's).")
@click.option("--face-detector", type=click.Choice(FACE_DETECTORS), default=DEFAULT_FACE_DETECTOR,
              show_default=True, help="mtcnn (with landmarks) or haar.")
@click.option("--lsl", is_flag=True, help="Also publish each row's AU scores as a Lab Streaming Layer stream "
              "named mdhr-live (type AU; the lsl extra: pip install 'mdhr-toolkit[lsl]').")
@quality_options
@verbose_option
def main(model_dir, host, port, faces, min_face, windows, hop, backend, threshold, face_detector, lsl, quality_flags,
         verbose):
    """Serve a page that scores your camera live: the video with the face
    box, one bar per AU, a scrolling timeline, frames/s and latency; Start,
    Stop and the session's CSV (mdhr-run's columns). When the model is
    slower than the camera, it takes every Nth frame, evenly, and never
    queues any. Ctrl-C stops the server.

    Manual: mdhr-live --docs prints docs/live.md (installed with the package).
    """
    def work():
        if threshold is not None:
            check_threshold(threshold)
        check_faces(faces, min_face)
        WindowPlan.make(windows, load_bundle(model_dir).frames, hop)  # the card and --hop, before any model loads
        aiohttp_web()  # the live extra installed, before any model loads
        quality = QualityOptions(**quality_flags)
        if lsl:
            lsl_module()  # the lsl extra installed, before any model loads
        if port:
            bind(host, port).close()  # a port in use is refused before the model loads
        with AUDetector(model_dir, backend=backend, threshold=threshold, face_detector=face_detector,
                        quality=quality) as detector:
            if detector.bundle.untrained:
                say("warning: this bundle holds an UNTRAINED model (made by mdhr-export --random-init); "
                    "its AU outputs are meaningless")
            warning = forced_warning(detector.bundle, backend)
            if warning:
                say(warning)
            _ = detector.stage_runner if windows == "centred" else detector.runner  # opened now, not on Start
            outlet = AUOutlet(detector.bundle.au_names) if lsl else None
            with LiveServer(detector, LiveOptions(windows, hop, faces, min_face), host, port, outlet) as server:
                click.echo(f"mdhr-live: open {server.url}  (Ctrl-C stops)", err=True)
                click.echo(server.url)  # standard output: for scripts
                try:
                    threading.Event().wait()
                except KeyboardInterrupt:  # the way to stop a server: not an interruption
                    say("stopped")

    run_reporting_errors(work, verbose, FLAGS)


# AUDetector's parameters that this command's options name otherwise
FLAGS = {"bundle_dir": "--model"}
