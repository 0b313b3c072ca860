"""Runners: one way to run a bundle's whole model per backend, in the
spirit of Polygraphy's runners.  ``Runner.infer(clips)`` checks the input
once (shape, dtype, values) and calls the backend's own ``_infer`` hook;
each runner has a ``name`` and ``precision`` for reports, and ``close()``.
Which runner a run gets is ``selection.py``'s job.

Thread safety: ONNX Runtime sessions may be run from several threads at
once; the TensorRT runner owns one execution context and device buffers, and
an OpenVINO runner one infer request, so give each thread its own.
"""
from __future__ import annotations

import numpy as np

from mdhr.aus import IMAGE_MEAN, IMAGE_STD
from mdhr.errors import BundleError, InputError
from mdhr_runtime.backends.sessions import onnx_session, ort_errors, provider_name, run_options
from mdhr_runtime.bundle import Bundle

# Normalised crops, (pixel / 255 - mean) / std with the ImageNet statistics,
# lie within about -2.1..2.6.  Values far beyond (0..255 pixels, a wrong
# scale) give confident nonsense, so they are refused rather than run.
NORMALISED_RANGE = (min(-m / s for m, s in zip(IMAGE_MEAN, IMAGE_STD)),
                    max((1 - m) / s for m, s in zip(IMAGE_MEAN, IMAGE_STD)))
CLIP_VALUE_LIMIT = 10.0
_EXPECTED = (f"normalised RGB face crops: pixel / 255, then (x - mean) / std with mean {list(IMAGE_MEAN)} "
             f"and std {list(IMAGE_STD)}, values within about {NORMALISED_RANGE[0]:.1f}..{NORMALISED_RANGE[1]:.1f}")


def check_clip_values(clips: np.ndarray) -> None:
    """Refuse input the model would turn into confident nonsense: anything
    but floats (uint8 pixels, complex), NaN or infinity (one NaN pixel
    spreads to most frames of its clip through the frame differences), and
    values far outside the normalised range."""
    if not np.issubdtype(clips.dtype, np.floating):
        raise InputError(f"clips of type {clips.dtype} given; the model takes float32 {_EXPECTED}")
    finite = np.isfinite(clips)
    if not finite.all():
        raise InputError(f"clips hold {clips.size - int(np.count_nonzero(finite))} NaN or infinite values; "
                         f"the model takes finite {_EXPECTED}")
    low, high = float(clips.min()), float(clips.max())
    if low < -CLIP_VALUE_LIMIT or high > CLIP_VALUE_LIMIT:
        raise InputError(f"clip values span {low:g}..{high:g}, far outside the normalised range; the model "
                         f"takes {_EXPECTED}")


def check_clips(clips: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(clips, np.ndarray) or clips.shape != tuple(shape):
        got = getattr(clips, "shape", type(clips).__name__)
        raise InputError(f"clips of shape {got} given, the bundle takes {list(shape)} float32 "
                         "(normalised RGB); pad the batch, or export a bundle for this shape (mdhr-export --batch "
                         "B --frames T)")
    check_clip_values(clips)
    return np.ascontiguousarray(clips, dtype=np.float32)


def check_outputs(path, found: dict[str, list], expected: dict[str, tuple[int, ...]]) -> None:
    """A graph gives every output the card names, in the card's shape (its
    AU and region counts), before any model call: a card that disagrees with
    its graph is named here, not found wrong after the work."""
    wrong = [f"{name} {list(found[name]) if name in found else 'missing'} (the card says {list(shape)})"
             for name, shape in expected.items() if name not in found or tuple(found[name]) != shape]
    if wrong:
        raise BundleError(f"{path}: the graph is not the model its card describes: {'; '.join(wrong[:2])}; "
                          "export the bundle again")


class Runner:
    """The base of every runner: ``infer`` takes clips [B, T, 3, 224, 224] as
    the bundle's input shape says, checks them, and hands them to
    ``_infer`` as contiguous float32."""

    name: str
    precision: str
    input_shape: tuple[int, ...]
    output_names: list[str]

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        return self._infer(check_clips(clips, self.input_shape))

    def _infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime on the given execution providers; by default CUDA where
    onnxruntime-gpu and a GPU exist, else CPU."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: list[str] | None = None,
                 threads: int | None = None):
        kind = {"fp32": "onnx", "fp16": "onnx_fp16"}.get(precision)
        path = bundle.artifact(kind) if kind else None
        if path is None or not path.is_file():
            raise BundleError(f"{bundle.root}: no {precision} ONNX model in this bundle; " + bundle.export_hint(kind))
        self.session = onnx_session(bundle.verified(kind), threads, providers)
        self.path = path
        self.input_shape = tuple(bundle.input_shape)
        self._check_graph(bundle)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.name = f"onnxruntime-{provider_name(self.session)}"
        self.precision = precision

    def _check_graph(self, bundle: Bundle) -> None:
        """The graph's input and outputs are the ones the card describes."""
        inputs = self.session.get_inputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else None
        if shape != self.input_shape:
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise BundleError(f"{self.path}: the graph (inputs {found}) is not the model its card describes (one "
                              f"input {list(self.input_shape)}); export the bundle again")
        check_outputs(self.path, {o.name: o.shape for o in self.session.get_outputs()}, bundle.card.output_shapes())

    def _infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        try:
            outputs = self.session.run(self.output_names, {self.input_name: clips}, run_options())
        except ort_errors() as e:
            raise BundleError(f"{self.path}: ONNX Runtime cannot run it ({str(e).splitlines()[0][:200]}); "
                              "export the bundle again") from None
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
