"""``AUDetector``: per-frame AU occurrence from a video, an image folder, an
image, or ready-made clips, with an exported bundle and no torch.

The facade only composes: the bundle (``bundle.py``), the backend chosen
(``backends/selection.py``), the graphs (opened when a run first needs
them) and the one scoring loop (``pipeline.py``)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mdhr.errors import InputError, MDHRError
from mdhr_runtime.backends.runners import check_clip_values
from mdhr_runtime.backends.selection import choose_backend, open_choice
from mdhr_runtime.backends.stages import StageRunner, has_stage_engines
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.checks import check_faces, check_threshold
from mdhr_runtime.choices import DEFAULT_FACE_DETECTOR, DEFAULT_FACES, DEFAULT_WINDOWS
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.faces.registry import check_face_detector
from mdhr_runtime.pipeline import WHOLE, ScoreOptions, Scoring, Span
from mdhr_runtime.results.table import FrameTable
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.timing import StageClock
from mdhr_runtime.windows.clips import ClipWindows
from mdhr_runtime.windows.streams import FrameStream, WindowPlan
from mdhr_runtime.windows.whole import WholeModelStream


class AUDetector:
    """Facial action units per frame, with an exported MDHR bundle.

    ``backend``: "auto" (a TensorRT engine on a GPU when the bundle has one,
    else ONNX Runtime), "onnxruntime" or "tensorrt"; ``why`` says what was
    chosen and why.  ``threshold`` overrides the bundle's decision threshold
    (0.5, as the official evaluation).

    Window modes (``windows.py``): "official" runs the whole model on
    non-overlapping windows (the paper's evaluation); "centred" runs the
    bundle's frame stage once per frame and its clip stage on windows every
    ``hop`` frames, each frame scored near the middle of its window.

    ``quality``: the thresholds of each row's quality flags
    (``faces/quality.py``; every row of a found face also carries its
    landmarks, head pose, size and frames since detection).

    Threads: with ONNX Runtime one detector may be shared by several threads
    (sessions are thread-safe and each ``predict_video`` call keeps its own
    tracking state); a TensorRT detector owns one execution context, so give
    each thread its own.
    """

    def __init__(self, bundle_dir: str | Path | Bundle, backend: str = "auto", threshold: float | None = None,
                 threads: int | None = None, face_detector: str = DEFAULT_FACE_DETECTOR,
                 quality: QualityOptions = QualityOptions()):
        check_face_detector(face_detector)
        if not isinstance(quality, QualityOptions):
            raise InputError(f"quality must be a QualityOptions, not {type(quality).__name__}")
        self.quality = quality
        if threshold is not None:
            check_threshold(threshold)
        # a Bundle already loaded (mdhr-run checked its card first): not read again
        self.bundle = bundle_dir if isinstance(bundle_dir, Bundle) else load_bundle(bundle_dir)
        self.choice = choose_backend(self.bundle, backend)
        self.why = self.choice.why
        self.threshold = self.bundle.threshold if threshold is None else float(threshold)
        self.face_detector = face_detector
        self.threads = threads
        self._runner = None
        self._stages = None
        self._closed = False
        self._opening = threading.Lock()  # threads sharing a detector open each graph once

    @property
    def runner(self):
        """The whole-model runner of the chosen backend, opened on first use
        (official windows, ``predict_clips``): a centred run never opens it."""
        with self._opening:
            self._check_open()
            if self._runner is None:
                self._runner = open_choice(self.bundle, self.choice, self.threads)
        return self._runner

    @property
    def stage_runner(self) -> StageRunner:
        """The bundle's frame and clip stages, opened on first use: their
        TensorRT engines where the whole model runs as one and mdhr-build
        made them, else ONNX Runtime."""
        with self._opening:
            self._check_open()
            if self._stages is None:
                engines = self.choice.backend == "tensorrt" and has_stage_engines(self.bundle)
                self._stages = StageRunner(self.bundle, threads=self.threads, engines=engines)
        return self._stages

    def window_scorer(self, plan: WindowPlan, live: bool = False) -> FrameStream | WholeModelStream:
        """The stream that scores ``plan``'s windows: official windows on the
        whole-model graph, centred ones on the frame and clip stages
        (``live``: rows as soon as final, see ``FrameStream``)."""
        if plan.mode == "official":
            return WholeModelStream(self.runner, ClipWindows.for_input_shape(self.bundle.input_shape))
        return FrameStream(self.stage_runner, plan, live)

    def stream(self, windows: str = DEFAULT_WINDOWS, hop: int | None = None) -> FrameStream:
        """A streaming scorer on the stages: ``push`` each ``CroppedFrame``, get
        rows when final (``plan.latency_frames`` frames later); ``finish`` at the end."""
        return FrameStream(self.stage_runner, WindowPlan.make(windows, self.bundle.frames, hop))

    def scoring(self, windows: str = DEFAULT_WINDOWS, hop: int | None = None, faces: str = DEFAULT_FACES,
                aligned: bool = False, min_face: int = DEFAULT_MIN_FACE, span: Span = WHOLE,
                clock: StageClock | None = None, live: bool = False) -> Scoring:
        """One run of the scoring pipeline with this detector's graphs
        (``live``: a live source, whose rows are wanted as soon as final)."""
        check_faces(faces, min_face, aligned)
        options = ScoreOptions(WindowPlan.make(windows, self.bundle.frames, hop), faces, aligned, min_face,
                               self.face_detector, self.quality, live)
        return Scoring(self, options, span, clock)

    @property
    def au_names(self) -> list[str]:
        return self.bundle.au_names

    @property
    def backend(self) -> str:
        """The whole-model runner's name (without opening it)."""
        return self.choice.name if self._runner is None else self._runner.name

    def predict_clips(self, clips: np.ndarray) -> np.ndarray:
        """AU scores [N, T, num_aus] for normalised clips [N, T, 3, 224, 224]
        (any N; T must be the bundle's).  Scores are cosine similarities in
        [-1, 1]; an AU is active at ``score >= threshold``."""
        clips = np.asarray(clips)
        B, T = self.bundle.batch, self.bundle.frames
        if clips.ndim != 5 or clips.shape[1:] != (T, 3, 224, 224) or len(clips) == 0:
            raise InputError(f"clips of shape {list(clips.shape)} given; this bundle takes [N, {T}, 3, 224, 224] "
                             "(normalised RGB face crops)")
        check_clip_values(clips)  # all of them, before the first model call
        clips = clips.astype(np.float32, copy=False)
        scores = []
        for start in range(0, len(clips), B):
            chunk = clips[start:start + B]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], B - len(chunk), axis=0)])
            scores.append(self.runner.infer(padded)["au_scores"][:len(chunk)])
        return np.concatenate(scores)

    def predict_video(self, source: str | Path | FrameSource, aligned: bool = False,
                      progress: Callable[[int], None] | None = None,
                      clock: StageClock | None = None, windows: str = DEFAULT_WINDOWS,
                      hop: int | None = None, faces: str = DEFAULT_FACES,
                      min_face: int = DEFAULT_MIN_FACE) -> FrameTable:
        """One row per frame of a video file, an image folder or an image
        (``faces="all"``: one row per frame and face).

        Frames are streamed (memory stays bounded whatever the length).
        ``aligned=True`` takes the frames as face crops already (no face
        detection).  Frames where no face is found are kept, with
        ``success`` false and no AU scores; windows without any face skip
        the model.  ``windows``/``hop`` choose the window mode (class doc).
        ``faces``: "largest" scores one face per frame (the table's
        ``other_faces`` says how many more the searches saw); "all" scores
        every face of at least ``min_face`` pixels, each with its own
        ``face_id``, frame-feature cache and windows (``multiface.py``).
        ``progress`` is called with the number of frames done; ``clock``
        collects the time of each stage (decode, detect, preprocess, model).

        A video not read to its end (cut short or damaged: the decoder
        failed, or its last frame ends short of the declared duration) is
        not an error: the frames read are in the table, whose ``complete``
        is then False and ``shortfall`` says why."""
        scoring = self.scoring(windows, hop, faces, aligned, min_face, clock=clock)
        frames = source if isinstance(source, FrameSource) else FrameSource(source)
        table = scoring.run(frames, after_frame=None if progress is None else lambda index: progress(index + 1))
        if len(table) == 0:
            raise InputError(f"{frames.path}: no frames could be read; is it an empty video?")
        return scoring.settle(complete=not frames.truncated, frames_declared=frames.frame_count,
                              shortfall=frames.shortfall)

    def profile_video(self, source: str | Path, aligned: bool = False, windows: str = DEFAULT_WINDOWS,
                      hop: int | None = None, faces: str = DEFAULT_FACES) -> dict:
        """Frames per second of the whole pipeline and the time of each stage."""
        return self.profile(source, aligned, windows, hop, faces)[0]

    def profile(self, source: str | Path, aligned: bool = False, windows: str = DEFAULT_WINDOWS,
                hop: int | None = None, faces: str = DEFAULT_FACES) -> tuple[dict, FrameTable]:
        """``profile_video``'s report, and the table it scored."""
        plan = WindowPlan.make(windows, self.bundle.frames, hop)
        clock = StageClock()
        start = time.perf_counter()
        table = self.predict_video(source, aligned, clock=clock, windows=windows, hop=hop, faces=faces)
        wall = time.perf_counter() - start
        frames = len({row.index for row in table.rows})
        backend = self.backend if plan.mode == "official" else self.stage_runner.name
        report = {"frames": frames, "frames_with_face": len({r.index for r in table.rows if r.face.success}),
                  "faces": faces, "face_rows": sum(r.face.success for r in table.rows),
                  "model_calls": table.model_calls,
                  "seconds": round(wall, 4), "fps": round(frames / wall, 3) if wall else None,
                  "complete": table.complete, "frames_declared": table.frames_declared,
                  "windows": plan.describe(), "backend": backend, "why": self.why,
                  "stages": clock.report(frames, wall), "other_seconds": round(max(wall - clock.total(), 0.0), 4)}
        return report, table

    def _check_open(self) -> None:
        if self._closed:
            raise MDHRError("this AUDetector is closed (close() was called, or its with block ended); make a "
                            "new AUDetector to score more")

    def close(self) -> None:
        """Release the model's graphs; using the detector afterwards raises an
        ``MDHRError``.  Closing twice is harmless."""
        with self._opening:
            self._closed = True
            graphs, self._runner, self._stages = (self._runner, self._stages), None, None
        for opened in graphs:
            if opened is not None:
                opened.close()

    def __enter__(self) -> "AUDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
