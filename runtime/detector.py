"""``AUDetector``: per-frame AU occurrence from a video, an image folder, an
image, or ready-made clips, with an exported bundle and no torch."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.windows.clips import ClipBatch, ClipWindows
from mdhr_runtime.crops.crop import crop_stream
from mdhr_runtime.faces.detection import HaarDetector, MTCNNDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.faces.tracking import FaceTracker
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.backends.runners import check_clip_values, open_runner
from mdhr_runtime.results.table import FrameTable
from mdhr_runtime.timing import StageClock
from mdhr_runtime.windows.streams import DEFAULT_WINDOWS, FrameStream, WindowPlan

FACE_DETECTORS = {"mtcnn": MTCNNDetector, "haar": HaarDetector}
# largest: one face per frame (the largest, then the one tracked), as before
# multi-face tracking existed; all: every face, each with its own face_id.
FACE_MODES = ("largest", "all")
DEFAULT_FACES = "largest"


def check_faces(faces: str, min_face: int, aligned: bool = False) -> None:
    if faces not in FACE_MODES:
        raise MDHRError(f"unknown face mode {faces!r}: choose {' or '.join(FACE_MODES)}")
    if not 1 <= min_face <= 10000:
        raise MDHRError(f"--min-face must be a face size in pixels (1 to 10000), got {min_face}")
    if aligned and faces == "all":
        raise MDHRError("--faces all needs face detection, and --aligned frames are one face crop each: "
                        "drop one of the two")


def check_threshold(threshold: float) -> float:
    """A decision threshold on the AU score, a cosine: finite, in [-1, 1]."""
    value = float(threshold)
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise MDHRError(f"threshold {threshold} is outside [-1, 1]: AU scores are cosine similarities, "
                        "so give a number from -1 to 1 (the default is 0.5)")
    return value


def crops(source: str | Path | FrameSource, aligned: bool = False, face_detector: str = "mtcnn",
          clock: StageClock | None = None, tracker: FaceTracker | None = None):
    """The normalised face crops of a video, image folder or image, streamed
    (the largest face, or the one ``tracker`` follows)."""
    if not aligned and tracker is None:
        tracker = FaceTracker(FACE_DETECTORS[face_detector]())
    frames = source if isinstance(source, FrameSource) else FrameSource(source)
    return crop_stream(frames, tracker, clock=clock or StageClock())


def clip_batches(source: str | Path | FrameSource, input_shape: tuple[int, ...], aligned: bool = False,
                 face_detector: str = "mtcnn", clock: StageClock | None = None,
                 tracker: FaceTracker | None = None) -> Iterator[ClipBatch]:
    """The model batches [B, T, 3, 224, 224] of a video, image folder or
    image, streamed: decode -> track the face -> crop -> clip windows."""
    clock = clock or StageClock()
    cropped = crops(source, aligned, face_detector, clock, tracker)
    return clock.timed(ClipWindows.for_input_shape(input_shape).batches(cropped), "preprocess")


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

    Threads: with ONNX Runtime one detector may be shared by several threads
    (sessions are thread-safe and each ``predict_video`` call keeps its own
    tracking state); a TensorRT detector owns one execution context, so give
    each thread its own.
    """

    def __init__(self, bundle_dir: str | Path, backend: str = "auto", threshold: float | None = None,
                 threads: int | None = None, face_detector: str = "mtcnn"):
        if face_detector not in FACE_DETECTORS:
            raise MDHRError(f"unknown face detector {face_detector!r}: choose {', '.join(FACE_DETECTORS)}")
        if threshold is not None:
            check_threshold(threshold)
        self.bundle = load_bundle(bundle_dir)
        self.runner, self.why = open_runner(self.bundle, backend, threads=threads)
        self.threshold = self.bundle.threshold if threshold is None else float(threshold)
        self.face_detector = face_detector
        self.threads = threads
        self._stages = None

    @property
    def stage_runner(self):
        """The bundle's frame and clip stages, opened on first use: their
        TensorRT engines where the whole model runs as one and mdhr-build
        made them, else ONNX Runtime."""
        if self._stages is None:
            from mdhr_runtime.backends.stages import StageRunner, has_stage_engines

            engines = self.runner.name == "tensorrt" and has_stage_engines(self.bundle)
            self._stages = StageRunner(self.bundle, threads=self.threads, engines=engines)
        return self._stages

    def stream(self, windows: str = DEFAULT_WINDOWS, hop: int | None = None) -> FrameStream:
        """A streaming scorer: ``push`` each ``CroppedFrame``, get rows when
        final (``plan.latency_frames`` frames later); ``finish`` at the end."""
        return FrameStream(self.stage_runner, WindowPlan.make(windows, self.bundle.frames, hop))

    @property
    def au_names(self) -> list[str]:
        return self.bundle.au_names

    @property
    def backend(self) -> str:
        return self.runner.name

    def predict_clips(self, clips: np.ndarray) -> np.ndarray:
        """AU scores [N, T, num_aus] for normalised clips [N, T, 3, 224, 224]
        (any N; T must be the bundle's).  Scores are cosine similarities in
        [-1, 1]; an AU is active at ``score >= threshold``."""
        clips = np.asarray(clips)
        B, T = self.bundle.batch, self.bundle.frames
        if clips.ndim != 5 or clips.shape[1:] != (T, 3, 224, 224) or len(clips) == 0:
            raise MDHRError(f"clips of shape {list(clips.shape)} given; this bundle takes [N, {T}, 3, 224, 224] "
                            "(normalised RGB face crops)")
        check_clip_values(clips)  # all of them, before the first model call
        clips = clips.astype(np.float32, copy=False)
        scores = []
        for start in range(0, len(clips), B):
            chunk = clips[start:start + B]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], B - len(chunk), axis=0)])
            scores.append(self.runner.infer(padded)["au_scores"][:len(chunk)])
        return np.concatenate(scores)

    def predict_video(self, source: str | Path, aligned: bool = False,
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
        check_faces(faces, min_face, aligned)
        plan = WindowPlan.make(windows, self.bundle.frames, hop)
        clock = clock or StageClock()
        frames = FrameSource(source)
        if faces == "all":
            table = self._predict_all_faces(frames, plan, clock, progress, min_face)
        else:
            table = self._predict_largest_face(frames, plan, clock, progress, aligned)
        if len(table) == 0:
            raise MDHRError(f"{source}: no frames could be read; is it an empty video?")
        table.frames_declared = frames.frame_count
        table.complete = not frames.truncated
        table.shortfall = frames.shortfall
        return table

    def _predict_largest_face(self, frames: FrameSource, plan: WindowPlan, clock: StageClock, progress,
                              aligned: bool) -> FrameTable:
        table = FrameTable(self.au_names, self.threshold)
        tracker = None if aligned else FaceTracker(FACE_DETECTORS[self.face_detector]())
        if plan.mode == "official":
            for batch in clip_batches(frames, self.bundle.input_shape, aligned, self.face_detector, clock, tracker):
                if batch.has_face.any():
                    with clock.stage("model"):
                        scores = self.runner.infer(batch.clips)["au_scores"]
                    table.model_calls += 1
                else:  # no face anywhere in these windows: their rows have no scores to keep
                    scores = np.zeros(batch.real.shape + (len(self.au_names),), dtype=np.float32)
                table.add_batch(batch, scores)
                if progress is not None:
                    progress(len(table))
        else:
            stream = FrameStream(self.stage_runner, plan)
            for frame in crops(frames, aligned, self.face_detector, clock, tracker):
                with clock.stage("model"):
                    rows = stream.push(frame)
                table.model_calls += frame.crop is not None
                self._add_rows(table, rows, progress)
            with clock.stage("model"):
                self._add_rows(table, stream.finish(), progress)
            table.model_calls += stream.windows_run
        table.other_faces = 0 if tracker is None else tracker.most_others
        return table

    def _predict_all_faces(self, frames: FrameSource, plan: WindowPlan, clock: StageClock, progress,
                           min_face: int) -> FrameTable:
        from mdhr_runtime.windows.multiface import TrackStreams
        from mdhr_runtime.faces.multitrack import MultiFaceTracker

        table = FrameTable(self.au_names, self.threshold, face_ids=True)
        tracker = MultiFaceTracker(FACE_DETECTORS[self.face_detector](), min_face=min_face)
        streams = TrackStreams(lambda: FrameStream(self.stage_runner, plan))
        for frame in clock.timed(frames, "decode"):
            with clock.stage("detect"):
                found = tracker.update(frame.rgb, frame.timestamp)
            for face_id, row in streams.push(frame, tracker, found, clock):
                table.add(row.frame, row.scores, face_id)
            if progress is not None:
                progress(frame.index + 1)
        for face_id, row in streams.finish(clock):
            table.add(row.frame, row.scores, face_id)
        table.sort()
        table.model_calls = streams.frames_run + streams.windows_run
        return table

    @staticmethod
    def _add_rows(table: FrameTable, rows, progress) -> None:
        for row in rows:
            table.add(row.frame, row.scores)
        if rows and progress is not None:
            progress(len(table))

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

    def close(self) -> None:
        self.runner.close()
        if self._stages is not None:
            self._stages.close()

    def __enter__(self) -> "AUDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
