"""mdhr-live: a page that scores the browser's camera as you watch."""
from __future__ import annotations

import threading

import click

from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.checks import check_faces, check_threshold
from mdhr_runtime.cli import scoring
from mdhr_runtime.cli.common import (
    PATH,
    mdhr_command,
    run_reporting_errors,
    say,
    verbose_option,
)
from mdhr_runtime.detector import AUDetector
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
@scoring.face_options
@scoring.window_options
@scoring.backend_option("As mdhr-run.")
@click.option("--threshold", type=float, help="Decision threshold on the AU score (default: the bundle's).")
@scoring.face_detector_option
@click.option("--lsl", is_flag=True, help="Also publish each row's AU scores as a Lab Streaming Layer stream "
              "named mdhr-live (type AU; the lsl extra: pip install 'mdhr-toolkit[lsl]').")
@scoring.quality_options
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
