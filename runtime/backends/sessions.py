"""The one ONNX Runtime session factory: the whole model, the frame and
clip stages and the face detector's networks all open through it."""
from __future__ import annotations

import os
from pathlib import Path

from mdhr.errors import MDHRError


def ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception types (a malformed or mismatched graph
    raises these, not a Python error)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))


def onnx_session(path: Path, threads: int | None = None, providers: list[str] | None = None,
                 spinning: bool = True, remedy: str = "export the bundle again"):
    """An ONNX Runtime session on a model file (CUDA where onnxruntime-gpu
    has a GPU, else CPU, unless ``providers`` says).  ``spinning=False`` for
    sessions that take turns with another: by default ORT's idle worker
    threads busy-wait for more work, taking the cores from the other
    session.  ``remedy``: what the user should do when the file cannot load."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    options.inter_op_num_threads = 1  # graphs run sequentially: no second pool
    options.log_severity_level = 3  # errors only: ORT's warnings are about its own internals
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return interruptible(lambda: ort.InferenceSession(str(path), options, providers=providers))
    except Exception as e:  # ORT raises its own exception types for bad files
        raise MDHRError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]}); {remedy}") from None


def interruptible(make):
    """``make()``, run in a helper thread while the main thread waits in short
    steps: creating a session optimises the graph in C for seconds (the
    full model's, longer on a loaded machine), and Python's signal handlers
    run only in the main thread, between bytecodes.  ONNX Runtime releases
    the GIL while it works, so the wait stays responsive; on a signal the
    main thread goes on to stop, and the unfinished session is dropped with
    the process (which then ends with os._exit: see
    ``cli.common._exit_now``).  Off the main thread ``make`` simply runs."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return make()
    return Started(make).result()


class Started:
    """``make()`` started now on a thread of its own; ``result()`` waits for
    it in short steps (signals still reach the main thread, as in
    ``interruptible``) and returns its value or raises its error, every time
    it is asked.  Lets a run open graphs while it does other work."""

    def __init__(self, make):
        import threading

        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._build, args=(make,), name="mdhr-session", daemon=True)
        self._thread.start()

    def _build(self, make) -> None:
        try:
            self._outcome["value"] = make()
        except BaseException as error:  # handed to whoever asks for the result
            self._outcome["error"] = error

    def result(self):
        while self._thread.is_alive():
            self._thread.join(0.1)
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


_RUN_OPTIONS = None


def run_options():
    """The RunOptions every long model call of this process runs with: one
    object, so a signal can stop whichever call is running
    (``stop_model_calls``); ONNX Runtime's run holds the main thread in C,
    where Python's own signal handler cannot run until it returns."""
    global _RUN_OPTIONS
    if _RUN_OPTIONS is None:
        import onnxruntime as ort

        _RUN_OPTIONS = ort.RunOptions()
    return _RUN_OPTIONS


def stop_model_calls() -> None:
    """Make every running and later ``run_options`` call end at once with an
    ONNX Runtime error (the process is stopping: see mdhr_runtime.cli.common)."""
    if _RUN_OPTIONS is not None:
        _RUN_OPTIONS.terminate = True


def model_calls_stopped() -> bool:
    """True once ``stop_model_calls`` was called: a model call's error is
    then the stop, not a failure."""
    return _RUN_OPTIONS is not None and bool(_RUN_OPTIONS.terminate)


def provider_name(session) -> str:
    """The execution provider a session runs on, as reports name it: cpu, cuda."""
    return session.get_providers()[0].replace("ExecutionProvider", "").lower()
