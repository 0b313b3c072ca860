"""TensorRT engines run through Polygraphy's ``TrtRunner``, behind the
runtime's Runner protocol.

Imported only after ``runners.tensorrt_unavailable_reason()`` said TensorRT,
Polygraphy and a CUDA GPU are present: a TensorRT Runtime made without a GPU
kills the process.
"""
from __future__ import annotations

import numpy as np

from mdhr.errors import BackendUnavailable, MDHRError
from mdhr_runtime.backends.gpu import Gpu, visible_gpu
from mdhr_runtime.backends.runners import Runner
from mdhr_runtime.bundle import Bundle


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


def check_engine_build(bundle: Bundle, path) -> None:
    """Refuse an engine of the bundle built for another TensorRT or GPU
    before TensorRT reads it, with the command that rebuilds it here."""
    import tensorrt as trt

    built = bundle.card.engine_build.described if bundle.card.engine_build else {}
    mismatch = engine_mismatch(built, trt.__version__, visible_gpu())
    if mismatch:
        raise BackendUnavailable(f"{path}: cannot run this TensorRT engine: {mismatch}; rebuild it here with: "
                                 f"{rebuild_command(bundle)}")


def rebuild_command(bundle: Bundle) -> str:
    built = bundle.card.engine_build.described if bundle.card.engine_build else {}
    return f"mdhr-build {bundle.root}" + (" --fp16" if built.get("precision") == "fp16" else "")


def cannot_load(bundle: Bundle, path, error: Exception) -> MDHRError:
    import tensorrt as trt

    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return BackendUnavailable(f"{path}: TensorRT {trt.__version__} cannot load this engine ({detail}); "
                              f"rebuild it with: {rebuild_command(bundle)}")


class TensorRTRunner(Runner):
    """The whole model's engine behind the Runner protocol.  One execution
    context: give each thread its own runner."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle):
        self.precision = bundle.card.engine_build.precision if bundle.card.engine_build else "unknown"
        self.input_shape = tuple(bundle.input_shape)
        self.input_name = bundle.card.input.name
        self.output_names = list(bundle.card.outputs)
        self._session = EngineSession(bundle, "engine")

    def _infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(self.output_names, {self.input_name: clips})))

    def close(self) -> None:
        self._session.close()


class EngineSession:
    """One engine of the bundle (``engine``, ``frame_stage_engine`` or
    ``clip_stage_engine`` of the card) behind ONNX Runtime's ``run(output
    names, feeds)``, so the stage code runs either alike.  One execution
    context: one thread."""

    def __init__(self, bundle: Bundle, kind: str):
        from polygraphy.backend.trt import EngineFromPath, TrtRunner

        quiet_polygraphy()
        path = bundle.verified(kind)
        check_engine_build(bundle, path)
        self._runner = None
        try:
            self._runner = TrtRunner(EngineFromPath(str(path)), name=kind)
            self._runner.activate()
        except Exception as e:  # Polygraphy's own exception type, or TensorRT's
            self.close()
            raise cannot_load(bundle, path, e) from None

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self._runner.infer({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()})
        return [np.asarray(outputs[name], dtype=np.float32).copy() for name in names]

    def close(self) -> None:
        """Frees the context, its buffers and stream, and the engine; safe to
        call twice and after a failed construction."""
        runner, self._runner = self._runner, None
        if runner is not None and runner.is_active:
            runner.deactivate()
