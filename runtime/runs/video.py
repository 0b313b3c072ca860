"""Score one video (or folder of frames, image, live source) and write its
outputs: the job behind ``mdhr-run``, ``mdhr-demo`` and Python callers.

``check_run`` proves everything that can be known before the model loads
(paths, options, the card, the input's header); ``run_video`` then scores
and writes every output together, only once each one succeeded."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mdhr.errors import InputError, param
from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.backends.openvino_runner import OPENVINO_BACKENDS
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.checks import check_faces, check_threshold
from mdhr_runtime.choices import DEFAULT_FACE_DETECTOR, DEFAULT_FACES, DEFAULT_WINDOWS
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.files.outputs import (
    check_distinct,
    check_room,
    check_run_paths,
    is_stdout,
    remove_stale_staging,
    staged_files,
)
from mdhr_runtime.results.overlay import check_overlay_input, render_overlay
from mdhr_runtime.results.provenance import Provenance, facts_beside, write_facts
from mdhr_runtime.results.report import report_html, video_beside
from mdhr_runtime.results.table import FrameTable
from mdhr_runtime.runs.camera import run_live
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.windows.streams import WindowPlan

Notify = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """What to score, with which bundle, and which outputs to write (None: not
    written; ``-`` for ``out`` or ``json``: standard output)."""

    model: Path
    input: Path | None = None
    camera: str | None = None  # a live source instead of ``input``: a camera index or a stream URL
    out: Path | None = None  # the CSV
    json: Path | None = None
    plot: Path | None = None
    overlay: Path | None = None
    report: Path | None = None
    windows: str = DEFAULT_WINDOWS
    hop: int | None = None
    backend: str = "auto"
    aligned: bool = False
    threshold: float | None = None
    faces: str = DEFAULT_FACES
    min_face: int = DEFAULT_MIN_FACE
    face_detector: str = DEFAULT_FACE_DETECTOR
    quality: QualityOptions = QualityOptions()  # the thresholds of the rows' quality flags

    def outputs(self) -> dict[str, Path | None]:
        """Every output path, by the parameter that names it."""
        return {param("out"): self.out, param("json"): self.json, param("plot"): self.plot,
                param("out") + "'s run facts": None if self.out is None or is_stdout(self.out) else facts_beside(
                    self.out), param("overlay"): self.overlay, param("report"): self.report,
                param("report") + "'s video": video_beside(self.report) if self.report else None}


@dataclass
class RunOutcome:
    """What a run scored and wrote."""

    table: FrameTable
    written: list[Path] = field(default_factory=list)  # files written (standard output not listed)
    interrupted: bool = False  # a live source stopped by the user
    scoring_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.table.complete

    @property
    def frames(self) -> int:
        return len({row.index for row in self.table.rows})

    @property
    def frames_with_face(self) -> int:
        return len({row.index for row in self.table.rows if row.face.success})


def check_run(options: RunOptions, notify: Notify = lambda line: None) -> tuple[Bundle, FrameSource | None]:
    """Everything that can be refused before the model loads, refused in one
    line; the bundle and the opened input (None for a live source), which
    the run then uses rather than reading them again."""
    o = options
    if (o.input is None) == (o.camera is None):
        raise InputError(f"give either {param('input')} (a video, folder or image) or {param('camera')} N|URL")
    if o.camera is None and o.out is None:
        raise InputError(f"{param('out')} is required: the CSV to write (- for standard output)")
    if o.input is not None and is_stdout(o.input):
        raise InputError(f"{param('input')} - (a video on standard input) is not supported: save it to a file "
                         "and give its path (for a file named -, write ./-)")
    if is_stdout(o.plot):
        raise InputError(f"{param('plot')} - : a PNG is not written to standard output; give a file name")
    if o.camera is not None and o.aligned:
        raise InputError(f"{param('aligned')} applies to files of face crops, not to {param('camera')}")
    if o.threshold is not None:
        check_threshold(o.threshold)
    check_faces(o.faces, o.min_face, o.aligned)
    if o.camera is not None and (o.overlay or o.report):
        raise InputError(f"{param('overlay')} and {param('report')} annotate a video file: give "
                         f"{param('input')} instead of {param('camera')}")
    check_run_paths(o.outputs(), {param("input"): o.input})
    if o.overlay or o.report:
        check_overlay_input(o.input, param("overlay") if o.overlay else param("report"))
    # the card only: says what is wrong with a bundle, or the hop, before any model loads
    bundle = load_bundle(o.model)
    WindowPlan.make(o.windows, bundle.frames, o.hop)
    check_distinct(o.outputs(), {param("model"): o.model})
    for target in o.outputs().values():
        if target is not None and not is_stdout(target):
            remove_stale_staging(target, notify)
    # the input's header (and, for a folder, every image's): a bad one is named before the model loads
    source = None if o.input is None else FrameSource(o.input)
    check_room(o.outputs(), source.frame_count if source else None)  # a full disk, before the model loads
    return bundle, source


def run_video(options: RunOptions, notify: Notify = lambda line: None, progress=None,
              status: Notify = lambda line: None, verbose: bool = False) -> RunOutcome:
    """Check, score and write.  ``notify`` gets notes for the user (an
    untrained bundle, a forced backend), ``progress(total)`` may return a
    callable told the frames done so far, ``status`` gets a live source's
    status line.  Raises ``MDHRError`` for anything the user can fix."""
    bundle, source = check_run(options, notify)
    o = options
    with AUDetector(bundle, backend=o.backend, threshold=o.threshold, face_detector=o.face_detector,
                    quality=o.quality) as detector:
        _notes(detector, o, notify, verbose)
        plan = WindowPlan.make(o.windows, detector.bundle.frames, o.hop)
        if o.camera is not None:
            live = run_live(detector, o.camera, o.windows, o.hop, status=status, faces=o.faces, min_face=o.min_face)
            outcome = RunOutcome(live.table, interrupted=live.interrupted, scoring_seconds=live.seconds)
        else:
            started = time.perf_counter()
            told = progress(source.frame_count) if progress else None
            table = detector.predict_video(source, aligned=o.aligned, windows=o.windows, hop=o.hop, faces=o.faces,
                                           min_face=o.min_face, progress=told)
            outcome = RunOutcome(table, scoring_seconds=time.perf_counter() - started)
        if len(outcome.table) == 0:
            raise InputError(f"no frame could be read from {o.camera or o.input}; nothing written")
        if o.out is None:  # a live source scored without an output
            return outcome
        outcome.written = _write_outputs(o, outcome, _provenance(o, detector, plan, outcome, source))
    return outcome


def _notes(detector: AUDetector, o: RunOptions, notify: Notify, verbose: bool) -> None:
    if detector.bundle.untrained:
        notify("warning: this bundle holds an UNTRAINED model (made by mdhr-export --random-init); "
               "its AU outputs are meaningless")
    if verbose:
        notify(f"backend: {detector.why}")
    warning = forced_warning(detector.bundle, o.backend)
    if warning:
        notify(warning)
    if o.windows == "centred" and detector.backend in OPENVINO_BACKENDS:
        notify(f"note: {detector.backend} runs the whole model per window (official windows); "
               "centred windows run the bundle's frame and clip stages on ONNX Runtime")


def _provenance(o: RunOptions, detector: AUDetector, plan: WindowPlan, outcome: RunOutcome,
                source: FrameSource | None) -> Provenance:
    """The run's facts, once, for every writer."""
    runner = detector.runner if o.windows == "official" else detector.stage_runner
    return Provenance(
        input=str(o.input or o.camera), bundle=str(o.model), dataset=detector.bundle.dataset,
        backbone=detector.bundle.backbone, untrained=detector.bundle.untrained,
        backend=detector.backend if o.windows == "official" else runner.name, precision=runner.precision,
        windows=plan.describe(), faces=o.faces, min_face=o.min_face if o.faces == "all" else None,
        threshold=outcome.table.threshold, video_fps=None if source is None else source.fps,
        scoring_fps=round(outcome.frames / outcome.scoring_seconds, 2) if outcome.scoring_seconds > 0 else None,
        quality_flags=asdict(o.quality))


def _write_outputs(o: RunOptions, outcome: RunOutcome, provenance: Provenance) -> list[Path]:
    """Every output staged, then renamed together (all or nothing).  The CSV
    gets its run facts beside it (not on standard output).  A report without
    an overlay stages its annotated video too, so a video too large to embed
    joins the other outputs."""
    table = outcome.table
    facts = None if is_stdout(o.out) else facts_beside(o.out)
    beside = video_beside(o.report) if o.report and not o.overlay else None
    targets = [o.out, facts, o.json, o.plot, o.overlay, o.report, beside]
    with staged_files(targets) as (csv_file, facts_file, json_file, plot_file, overlay_file, report_file,
                                   beside_file):
        table.write_csv(csv_file)
        if facts_file:
            write_facts(provenance, facts_file, csv_file)
        if json_file:
            table.write_json(json_file, provenance.facts())
        if plot_file:
            title = f"{Path(provenance.input).name}: MDHR {provenance.dataset}" + (
                " (UNTRAINED)" if provenance.untrained else "")
            table.plot_timeline(plot_file, title=title)
        if overlay_file or beside_file:
            render_overlay(table, o.input, overlay_file or beside_file)
        embedded = False
        if report_file:
            page, where_video, _ = report_html(table, o.report, provenance, o.input, overlay_file or beside_file,
                                               overlay_link=o.overlay or beside)
            report_file.write_text(page, encoding="utf-8")
            if beside_file and where_video == "embedded":
                beside_file.unlink()  # embedded: nothing to place beside the report
                embedded = True
    placed = [o.out, facts, o.json, o.plot, o.overlay, o.report, None if embedded else beside]
    return [Path(p) for p in placed if p is not None and not is_stdout(p) and Path(p).exists()]
