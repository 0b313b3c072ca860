"""TensorRT engines run through Polygraphy's ``TrtRunner``, behind the
runtime's Runner protocol.

Imported only after ``runners.tensorrt_unavailable_reason()`` said TensorRT,
Polygraphy and a CUDA GPU are present: a TensorRT Runtime made without a GPU
kills the process.
"""
from __future__ import annotations

import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.gpu import Gpu, visible_gpu
from mdhr_runtime.runners import check_clips


def quiet_polygraphy(verbose: bool = False) -> None:
    """Polygraphy logs every step at INFO, in colour when it can; keep its
    warnings and errors only, in plain text, unless asked for more."""
    from polygraphy.logger import G_LOGGER

    G_LOGGER.colors = False
    G_LOGGER.module_severity = G_LOGGER.VERBOSE if verbose else G_LOGGER.WARNING


def engine_mismatch(built: dict, tensorrt: str, gpu: Gpu) -> str | None:
    """Why an engine built as ``built`` (the card's ``engine_build``) cannot
    run with this TensorRT on this GPU: engines are tied to both."""
    here = {"tensorrt": tensorrt, "gpu": gpu.name, "compute_capability": gpu.compute_capability}
    for key, what in (("tensorrt", "TensorRT"), ("gpu", "GPU"), ("compute_capability", "compute capability")):
        if built.get(key) and built[key] != here[key]:
            return f"it was built with {what} {built[key]} and this machine has {here[key]}"
    return None


class TensorRTRunner:
    """One engine, one execution context: give each thread its own runner."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle):
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromPath, TrtRunner

        quiet_polygraphy()
        path = bundle.artifact("engine")
        built = bundle.card.get("engine_build") or {}
        mismatch = engine_mismatch(built, trt.__version__, visible_gpu())
        if mismatch:
            raise MDHRError(f"{path}: cannot run this TensorRT engine: {mismatch}; rebuild it here with: "
                            f"mdhr-build {bundle.root}" + (" --fp16" if built.get("precision") == "fp16" else ""))
        self.precision = built.get("precision", "unknown")
        self.input_shape = tuple(bundle.input_shape)
        self.input_name = bundle.card["input"]["name"]
        self.output_names = list(bundle.card["outputs"])
        self._runner = None
        try:
            self._runner = TrtRunner(EngineFromPath(str(path)), name="tensorrt")
            self._runner.activate()
        except Exception as e:  # Polygraphy's own exception type, or TensorRT's
            self.close()
            raise MDHRError(f"{path}: TensorRT {trt.__version__} cannot load this engine "
                            f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); "
                            f"rebuild it with: mdhr-build {bundle.root}") from None

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        clips = check_clips(clips, self.input_shape)
        outputs = self._runner.infer({self.input_name: clips})
        return {name: np.asarray(outputs[name], dtype=np.float32).copy() for name in self.output_names}

    def close(self) -> None:
        """Frees the context, its buffers and stream, and the engine; safe to
        call twice and after a failed construction."""
        runner, self._runner = self._runner, None
        if runner is not None and runner.is_active:
            runner.deactivate()
