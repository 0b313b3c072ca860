"""OpenVINO on the CPU, behind the runtime's Runner protocol: the bundle's
``model.onnx`` in float32 (``openvino``) or with bfloat16 inference
precision (``openvino-bf16``), and the bundle's INT8 model (``int8``).

Under bfloat16 the layer groups the export's bf16 search chose stay
float32 (card ``bf16.kept_fp32``: ``layer_groups.py``); a bundle exported
without that search keeps the region and AU modelling float32.  Measured with
PyTorch autocast, one part of the model at a time (shared/reference
"Where reduced precision hurts"): the region heads are where bfloat16
damages agreement, since their argmax switches the cross-region graph,
while the backbone and the frame differences tolerate it.  The region and
AU modelling is about 5 of 230 GFLOP per clip, so keeping it float32 costs
little.  OpenVINO's CPU plugin keeps a node in its original precision when
its runtime info carries ``disable_fp16_compression`` (honoured for bf16 as
for f16 inference precision since OpenVINO 2024.0).

Needs ``pip install 'mdhr-toolkit[openvino]'``.  A compiled model owns one
infer request: give each thread its own runner.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from mdhr.errors import BackendUnavailable, BundleError, param
from mdhr_runtime.backends.layer_groups import keep_bf16_islands
from mdhr_runtime.backends.runners import Runner, check_outputs
from mdhr_runtime.bundle import Bundle
from mdhr_runtime.choices import BACKEND_TABLE

INSTALL = "pip install 'mdhr-toolkit[openvino]'"
# backend -> (inference precision, the bundle artifact it compiles)
OPENVINO_BACKENDS = {b.name: (b.precision, "openvino_int8" if b.precision == "int8" else "onnx")
                     for b in BACKEND_TABLE if b.family == "openvino"}


# How long one wait for an inference lasts before Python checks for signals.
WAIT_STEP_MS = 50


def openvino_unavailable_reason(backend: str, bundle: Bundle | None = None) -> str | None:
    """Why ``backend`` (openvino, openvino-bf16, int8) cannot run here, or
    None when it can.  Nothing is compiled."""
    precision, kind = OPENVINO_BACKENDS[backend]
    try:
        import openvino
    except ImportError:
        return f"OpenVINO is not installed ({INSTALL})"
    if precision == "bf16":
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:
            return ("this CPU has no native bfloat16 (AVX-512 BF16 or AMX); OpenVINO's CPU plugin reports "
                    f"{', '.join(capabilities)} only, so bf16 inference would not run")
    if bundle is not None:
        path = bundle.artifact(kind)
        if path is None or not path.is_file():
            return ("the bundle has no INT8 model (export one with: mdhr-export ... --int8 --calibrate VIDEO)"
                    if precision == "int8" else f"the bundle has no fp32 ONNX model; {bundle.export_hint(kind)}")
        if precision == "bf16" and not bundle.card.islands:
            return "the bundle's card names no float32 islands for bf16 (export it again with this version)"
    return None


def compile_config(precision: str, threads: int | None = None) -> dict:
    """The CPU plugin's settings for a runner of ``precision`` (also what the
    export's INT8 search times its candidates with)."""
    return {"INFERENCE_NUM_THREADS": threads or min(os.cpu_count() or 1, 8), "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            # float32 unless bf16 is asked for: the plugin would otherwise pick bf16 itself on AMX CPUs
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}


class OpenVINORunner(Runner):
    """One compiled model and one infer request on the CPU."""

    device = "cpu"

    def __init__(self, bundle: Bundle, backend: str = "openvino", threads: int | None = None):
        import openvino as ov

        reason = openvino_unavailable_reason(backend, bundle)
        if reason:
            raise BackendUnavailable(f"{param('backend')} {backend} is unavailable: {reason}")
        self.name, (self.precision, kind) = backend, OPENVINO_BACKENDS[backend]
        self.path = bundle.verified(kind)
        if kind == "openvino_int8":
            bundle.verified("openvino_int8_weights")  # read_model reads the .bin beside the .xml
        self.input_shape = tuple(bundle.input_shape)
        self.output_names = list(bundle.card.outputs)
        self._expected_shapes = bundle.card.output_shapes()
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as e:
            raise BundleError(f"{self.path}: OpenVINO cannot read it ({str(e).splitlines()[0][:200]}); "
                              "export the bundle again") from None
        self._check_graph(model)
        self.fp32_nodes = 0
        if self.precision == "bf16":
            self.fp32_nodes = keep_bf16_islands(model, bundle.card)
        self._compiled = core.compile_model(model, "CPU", compile_config(self.precision, threads))
        del model
        used = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        if self.precision == "bf16" and used != ov.Type.bf16:
            self.close()
            raise BackendUnavailable(f"{param('backend')} {backend} is unavailable: OpenVINO compiled the model in {used}, not bf16")
        self._request = self._compiled.create_infer_request()

    def _check_graph(self, model) -> None:
        inputs = [tuple(i.get_partial_shape().to_shape()) if i.get_partial_shape().is_static else None
                  for i in model.inputs]
        outputs = {name for o in model.outputs for name in o.get_names()}
        if inputs != [self.input_shape] or not set(self.output_names) <= outputs:
            raise BundleError(f"{self.path}: the graph (inputs {inputs}; outputs {sorted(outputs)}) is not the model "
                              f"its card describes (one input {list(self.input_shape)}, outputs "
                              f"{', '.join(self.output_names)}); export the bundle again")
        shapes = {name: (list(o.get_partial_shape().to_shape()) if o.get_partial_shape().is_static else ["?"])
                  for o in model.outputs for name in o.get_names()}
        check_outputs(self.path, shapes, self._expected_shapes)

    def _infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        # Started and waited for in short steps rather than one blocking
        # infer(): Python runs signal handlers between the steps, and a
        # signal cancels the request instead of waiting out the call.
        self._request.start_async({0: clips})
        try:
            while not self._request.wait_for(WAIT_STEP_MS):
                pass
        except BaseException:
            # cancelled, the request still ends its work; freeing it before
            # that would abort the process
            self._request.cancel()
            with contextlib.suppress(Exception):
                self._request.wait()
            raise
        results = self._request.results
        return {name: np.array(results[self._compiled.output(name)], dtype=np.float32) for name in self.output_names}

    def close(self) -> None:
        """Frees the request and the compiled model (its weights); safe to
        call twice."""
        self._request = None
        self._compiled = None
