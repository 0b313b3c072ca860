"""The two stage graphs of a bundle (``frame_stage`` once per frame,
``clip_stage`` once per window; see ``mdhr/stages.py`` for the cut) run with
ONNX Runtime, without torch.

``StageRunner.frame`` takes one normalised crop [3, 224, 224] and the taps
it returned for the previous frame; ``StageRunner.run_frames`` takes a run
of consecutive crops, and where the bundle has ``frame_batch`` (the frame
stage over a hop of frames per call, fp32, kept by the export only where
it gives the one-frame graph's bits) runs them a hop per call;
``StageRunner.clip`` takes one window's static tokens [T, 49, 512] and
its T-1 in-window pair motions; ``StageRunner.clip_centre`` takes the same
and, where the bundle has ``clip_centre`` (fp32, kept by the export only
where it gives the clip stage's bits at the centre), scores the window's
centre frame alone, for centred windows of hop 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdhr.errors import BundleError, InputError
from mdhr_runtime.backends import tensorrt_runner
from mdhr_runtime.backends.runners import check_outputs
from mdhr_runtime.backends.sessions import onnx_session, provider_name, run_options
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.card import PREVIOUS_TAPS
from mdhr_runtime.timing import speedup

# A faster graph of a stage (frame_batch, clip_centre) is a session of its
# own (frame_batch's holds 0.5 GiB for BP4D ResNet-50 and takes a second to
# open): below this speed-up, measured at export, the plain stage is kept.
MIN_SPEEDUP = 1.1
STAGE_KINDS = {"fp32": ("frame_stage", "clip_stage"), "fp16": ("frame_stage_fp16", "clip_stage_fp16")}
STAGE_ENGINE_KINDS = ("frame_stage_engine", "clip_stage_engine")
FRAME_INPUT = "frame"
STATIC, DYNAMICS, TAPS = "static", "dynamics", ("tap1", "tap2", "tap3", "tap4")


@dataclass(frozen=True)
class FrameFeatures:
    """What the cache keeps for one frame: its static tokens [49, 512] and
    the motion of the pair (previous frame, this frame) [4, 528, 7, 7]
    (the graph names it ``dynamics``; see ``mdhr/stages.py``)."""

    static: np.ndarray
    dynamics: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.static.nbytes + self.dynamics.nbytes


def has_stages(bundle: Bundle, precision: str = "fp32") -> bool:
    return all(_graph_file(bundle, kind) is not None for kind in STAGE_KINDS[precision])


def has_stage_engines(bundle: Bundle) -> bool:
    """Whether mdhr-build left TensorRT engines of both stages in the bundle."""
    return all(_graph_file(bundle, kind) is not None for kind in STAGE_ENGINE_KINDS)


def _graph_file(bundle: Bundle, kind: str) -> Path | None:
    """The file of the artifact ``kind``, where the card names one and it is there."""
    path = bundle.artifact(kind)
    return path if path is not None and path.is_file() else None


class StageRunner:
    """Frame and clip stage sessions of a bundle: ONNX Runtime, or with
    ``engines=True`` the TensorRT engines mdhr-build made of them (only
    where ``selection.tensorrt_unavailable_reason()`` is None)."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int | None = None,
                 providers: list[str] | None = None, engines: bool = False):
        if precision not in STAGE_KINDS:
            raise InputError(f"unknown precision {precision!r}: use fp32 or fp16")
        named = [bundle.artifact(kind) for kind in STAGE_KINDS[precision]]
        missing = [path for path in named if path is not None and not path.is_file()]
        if missing:
            raise BundleError(f"{missing[0]} is missing from the bundle (its card names it); export the bundle again")
        if not has_stages(bundle, precision):
            raise BundleError(f"{bundle.root}: this bundle has no {precision} stage graphs (frame_stage, clip_stage), "
                              "needed for centred windows and streaming; " + bundle.export_hint(STAGE_KINDS[precision][0]))
        described = bundle.card.stages
        if described is None:
            raise BundleError(f"{bundle.root}: the card does not describe the stage graphs; export the bundle again")
        self.tap_shapes = list(described.tap_shapes)
        self.clip_outputs = list(described.clip_outputs)
        if engines:
            self.frame_session, self.clip_session = (tensorrt_runner.EngineSession(bundle, kind)
                                                  for kind in STAGE_ENGINE_KINDS)
            self.name = "tensorrt"
            self.precision = bundle.card.engine_build.precision if bundle.card.engine_build else "unknown"
        else:
            frame_kind, clip_kind = STAGE_KINDS[precision]
            # The two sessions alternate (a frame, then a window): neither spins.
            self.frame_session = onnx_session(bundle.verified(frame_kind), threads, providers, spinning=False)
            self.clip_session = onnx_session(bundle.verified(clip_kind), threads, providers, spinning=False)
            _check_graph(self.frame_session, bundle.artifact(frame_kind), (FRAME_INPUT, *PREVIOUS_TAPS),
                         (STATIC, DYNAMICS, *TAPS))
            _check_tap_shapes(self.frame_session, bundle.artifact(frame_kind), self.tap_shapes)
            _check_graph(self.clip_session, bundle.artifact(clip_kind), (STATIC, DYNAMICS), self.clip_outputs)
            _check_window_length(self.clip_session, bundle.artifact(clip_kind), bundle.frames)
            check_outputs(bundle.artifact(clip_kind), {o.name: o.shape for o in self.clip_session.get_outputs()},
                          bundle.card.output_shapes(1, bundle.frames))
            self.name, self.precision = f"onnxruntime-{provider_name(self.frame_session)}", precision
        self.frames = bundle.frames
        self._still: np.ndarray | None = None
        self._bundle, self._options = bundle, (threads, providers)
        self._batch_session = self._centre_session = None
        # The stages' faster graphs, each opened when first needed: ONNX Runtime fp32 only (the card names each
        # only where it was bit-identical at export), and used only where the export measured it clearly faster
        # (or did not measure): each session costs memory of its own (docs/pipeline.md).
        plain = not engines and precision == "fp32"
        # frame_batch: the frame stage a hop of frames per call
        self._batch_path = _graph_file(bundle, "frame_batch") if plain else None
        faster = self._batch_path is not None and _faster(described.frame_batch)
        self.batch_frames = described.frame_batch.frames if faster else 1
        # clip_centre: the clip stage for the centre frame alone (centred windows of hop 1)
        usable = plain and _graph_file(bundle, "clip_centre") is not None and _faster(described.clip_centre)
        self.centre_position = described.clip_centre.position if usable else None
        if usable and self.centre_position != self.frames // 2:
            raise BundleError(f"{bundle.root}: the card says the centre-only clip stage scores window position "
                              f"{self.centre_position}, but a centred window's centre is {self.frames // 2}; export "
                              "the bundle again")

    def frame(self, crop: np.ndarray, previous: list[np.ndarray] | None
              ) -> tuple[FrameFeatures, list[np.ndarray]]:
        """Features of one crop and its taps (the next call's ``previous``).
        Without a previous frame the crop is its own predecessor: no motion."""
        if previous is None:
            zeros = [np.zeros(s, dtype=np.float32) for s in self.tap_shapes]
            features, taps = self._run_frame(crop, zeros)
            return FrameFeatures(features.static, self.still_dynamics(crop, taps)), taps
        return self._run_frame(crop, previous)

    def run_frames(self, crops: list[np.ndarray], previous: list[np.ndarray] | None
               ) -> tuple[list[FrameFeatures], list[np.ndarray]]:
        """Features of consecutive crops (each the next one's predecessor)
        and the last one's taps: ``frame`` on each in turn, to the bit, in
        ``batch_frames`` per call where the bundle allows."""
        features: list[FrameFeatures] = []
        start = 0
        while start < len(crops):
            if len(crops) - start >= self.batch_frames > 1:
                chunk, previous = self._run_batch(crops[start:start + self.batch_frames], previous)
                features += chunk
                start += self.batch_frames
            else:
                one, previous = self.frame(crops[start], previous)
                features.append(one)
                start += 1
        return features, previous

    def _run_batch(self, crops: list[np.ndarray], previous: list[np.ndarray] | None
                   ) -> tuple[list[FrameFeatures], list[np.ndarray]]:
        if self._batch_session is None:
            threads, providers = self._options
            self._batch_session = onnx_session(self._bundle.verified("frame_batch"), threads, providers,
                                               spinning=False)
            _check_graph(self._batch_session, self._batch_path, (FRAME_INPUT, *PREVIOUS_TAPS), (STATIC, DYNAMICS, *TAPS))
            _check_frames_per_call(self._batch_session, self._batch_path, self.batch_frames)
        first = previous is None
        if first:
            previous = [np.zeros(s, dtype=np.float32) for s in self.tap_shapes]
        frames = np.stack(crops).astype(np.float32, copy=False)
        static, dynamics, *taps = self._batch_session.run([STATIC, DYNAMICS, *TAPS],
                                                          {FRAME_INPUT: frames, **dict(zip(PREVIOUS_TAPS, previous))},
                                                          run_options())
        features = [FrameFeatures(s, d) for s, d in zip(static, dynamics)]
        if first:  # no predecessor: a repeated frame, as ``frame`` says
            features[0] = FrameFeatures(features[0].static, self.still_dynamics())
        return features, taps

    def _run_frame(self, crop: np.ndarray, previous: list[np.ndarray]) -> tuple[FrameFeatures, list[np.ndarray]]:
        feeds = {FRAME_INPUT: np.ascontiguousarray(crop, dtype=np.float32)[None], **dict(zip(PREVIOUS_TAPS, previous))}
        static, dynamics, *taps = self.frame_session.run([STATIC, DYNAMICS, *TAPS], feeds, run_options())
        return FrameFeatures(static[0], dynamics[0]), taps

    def still_dynamics(self, crop: np.ndarray | None = None, taps: list[np.ndarray] | None = None) -> np.ndarray:
        """The motion of a repeated frame (a zero difference, so exactly the
        strided convolutions' biases through BatchNorm, ReLU and the two
        projections): the same for every frame, so computed once.  Given a
        crop and its taps, from that crop as its own predecessor (one frame
        stage run); else from the zero image (two runs: its taps first)."""
        if self._still is None:
            if crop is None:
                crop = np.zeros((3, 224, 224), dtype=np.float32)
                taps = self._run_frame(crop, [np.zeros(s, dtype=np.float32) for s in self.tap_shapes])[1]
            self._still = self._run_frame(crop, taps)[0].dynamics
        return self._still

    def clip_all(self, window: list[FrameFeatures]) -> dict[str, np.ndarray]:
        """Every output ([T, n] each) of the clip stage on a window of T frames."""
        if len(window) != self.frames:
            raise InputError(f"a window of {len(window)} frames given, the clip stage takes {self.frames}")
        outputs = self.clip_session.run(self.clip_outputs, self._window_feeds(window), run_options())
        return {name: out[0] for name, out in zip(self.clip_outputs, outputs)}

    def clip(self, window: list[FrameFeatures]) -> np.ndarray:
        """AU scores [T, N] of a window of T frames."""
        return self.clip_all(window)["au_scores"]

    def clip_centre_all(self, window: list[FrameFeatures]) -> dict[str, np.ndarray]:
        """Every output ([n] each) of the window's frame at ``centre_position``
        through the centre-only clip stage (the clip stage's bits there: the
        export names the graph only where they were; ``centre_position`` is
        None where the bundle has none to use)."""
        if len(window) != self.frames:
            raise InputError(f"a window of {len(window)} frames given, the clip stage takes {self.frames}")
        if self._centre_session is None:
            path = self._bundle.artifact("clip_centre")
            if path is None:
                raise BundleError(f"{self._bundle.root}: this bundle has no centre-only clip stage (clip_centre); "
                                  + self._bundle.export_hint("clip_centre"))
            session = onnx_session(self._bundle.verified("clip_centre"), *self._options, spinning=False)
            _check_graph(session, path, (STATIC, DYNAMICS), self.clip_outputs)
            _check_window_length(session, path, self.frames)
            check_outputs(path, {o.name: o.shape for o in session.get_outputs()},
                          self._bundle.card.output_shapes(1, 1))
            self._centre_session = session
        outputs = self._centre_session.run(self.clip_outputs, self._window_feeds(window), run_options())
        return {name: out[0, 0] for name, out in zip(self.clip_outputs, outputs)}

    def clip_centre(self, window: list[FrameFeatures]) -> np.ndarray:
        """AU scores [N] of the window's centre frame (``clip_centre_all``)."""
        return self.clip_centre_all(window)["au_scores"]

    @staticmethod
    def _window_feeds(window: list[FrameFeatures]) -> dict[str, np.ndarray]:
        return {STATIC: np.stack([f.static for f in window])[None],
                DYNAMICS: np.stack([f.dynamics for f in window[1:]])[None]}

    def close(self) -> None:
        for session in (self.frame_session, self.clip_session):
            if hasattr(session, "close"):  # an engine's context and buffers; ORT needs no call
                session.close()
        self.frame_session = self.clip_session = self._batch_session = self._centre_session = None


def _faster(account) -> bool:
    """Whether a faster graph's card account (``FrameBatch``, ``ClipCentre``)
    says it was clearly faster at export (or was not measured)."""
    return account is not None and (account.speedup is None or account.speedup >= MIN_SPEEDUP)


def _check_frames_per_call(session, path, frames: int) -> None:
    """``frame_batch`` takes the card's frames per call (a card edited to
    another count would otherwise fail inside ONNX Runtime)."""
    found = next(i.shape for i in session.get_inputs() if i.name == FRAME_INPUT)[0]
    if isinstance(found, int) and found != frames:
        raise BundleError(f"{path}: the graph takes {found} frames per call, not the {frames} its card describes; "
                          "export the bundle again")


def _check_window_length(session, path, frames: int) -> None:
    """The clip stage takes windows of the card's T frames (a card edited to
    another T would otherwise fail inside ONNX Runtime)."""
    found = next(i.shape for i in session.get_inputs() if i.name == STATIC)
    if found[1] != frames:
        raise BundleError(f"{path}: the graph takes windows of {found[1]} frames, not the {frames} its card describes; "
                          "export the bundle again")


def _check_graph(session, path, inputs, outputs) -> None:
    """A stage file holds the graph the card describes (not the other stage,
    or another bundle's file put in its place)."""
    found_in = [i.name for i in session.get_inputs()]
    found_out = [o.name for o in session.get_outputs()]
    if set(found_in) != set(inputs) or not set(outputs) <= set(found_out):
        raise BundleError(f"{path}: the graph (inputs {', '.join(found_in)}; outputs {', '.join(found_out)}) is not the "
                          f"graph its card describes (inputs {', '.join(inputs)}; outputs {', '.join(outputs)}); "
                          "export the bundle again")


def _check_tap_shapes(session, path, shapes) -> None:
    """The taps the card says the frame stage takes (which the runtime
    allocates for a first frame) are the ones the graph takes."""
    found = {i.name: tuple(i.shape) for i in session.get_inputs()}
    wrong = [name for name, shape in zip(PREVIOUS_TAPS, shapes) if found.get(name) != tuple(shape)]
    if wrong:
        raise BundleError(f"{path}: the graph takes {wrong[0]} {list(found.get(wrong[0], ()))}, not the "
                          f"{list(shapes[PREVIOUS_TAPS.index(wrong[0])])} its card describes; export the bundle again")


def official_windows(runner: StageRunner, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every clip of ``clips`` ([B, T, 3, 224, 224] batches) through the
    stages as one official window: per clip, outputs like ``model.onnx``'s
    ([1, T, n] each).  How exports and engine builds prove a split exact."""
    return window_outputs(runner, clip_windows(runner, clips))


def window_outputs(runner: StageRunner, windows: list[list[FrameFeatures]]) -> list[dict[str, np.ndarray]]:
    """The clip stage's outputs ([1, T, n] each) of each window."""
    return [{k: v[None] for k, v in runner.clip_all(window).items()} for window in windows]


def clip_windows(runner: StageRunner, clips: list[np.ndarray]) -> list[list[FrameFeatures]]:
    """Each clip of ``clips`` ([B, T, 3, 224, 224] batches) through the frame
    stage, one frame per call: a window of features per clip."""
    windows = []
    for batch in clips:
        for clip in batch:
            window, previous = [], None
            for crop in clip:
                features, previous = runner.frame(crop, previous)
                window.append(features)
            windows.append(window)
    return windows


def centre_differences(runner: StageRunner, windows: list[list[FrameFeatures]]) -> list[str]:
    """The outputs in which the centre-only clip stage and the clip stage at
    the window's centre differ in any bit over ``windows``."""
    differing = set()
    for window in windows:
        whole, centre = runner.clip_all(window), runner.clip_centre_all(window)
        differing |= {name for name in whole if not np.array_equal(whole[name][runner.centre_position], centre[name])}
    return sorted(differing)


def centre_speedup(runner: StageRunner, window: list[FrameFeatures], rounds: int = 3) -> float:
    """How many times faster the centre-only clip stage runs a window than
    the clip stage (alternating medians, ``timing.speedup``)."""
    return speedup(lambda: runner.clip(window), lambda: runner.clip_centre(window), rounds)


def batch_differences(runner: StageRunner, crops: list[np.ndarray]) -> list[str]:
    """The outputs in which ``runner.run_frames`` (a hop per call) and ``frame``
    one crop at a time differ in any bit over consecutive ``crops``."""
    batched, last_taps = runner.run_frames(crops, None)
    previous, differing = None, set()
    for crop, together in zip(crops, batched):
        alone, previous = runner.frame(crop, previous)
        for name in ("static", "dynamics"):
            if not np.array_equal(getattr(alone, name), getattr(together, name)):
                differing.add(name)
    differing |= {name for name, a, b in zip(TAPS, previous, last_taps) if not np.array_equal(a, b)}
    return sorted(differing)


def batch_speedup(runner: StageRunner, crops: list[np.ndarray], rounds: int = 3) -> float:
    """How many times faster one ``frame_batch`` call takes a hop of crops
    than ``frame`` one crop at a time (median of ``rounds`` alternating
    runs, after one of each to warm up; load changes hit both alike)."""
    hop = crops[1:1 + runner.batch_frames]
    _, taps = runner.frame(crops[0], None)

    def one_by_one() -> None:
        previous = taps
        for crop in hop:
            _, previous = runner.frame(crop, previous)

    return speedup(one_by_one, lambda: runner.run_frames(hop, taps), rounds)
