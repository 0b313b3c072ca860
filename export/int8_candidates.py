"""INT8 candidates from one calibration.

NNCF's post-training quantisation collects its activation ranges on the
float32 model, so the ranges (and the bias corrections, made layer by layer
from float32 inputs) do not depend on which other layers are quantised.
The search therefore quantises every searched group once and makes each
candidate from that model by taking the quantisation out of the groups it
keeps float32:

* an activation FakeQuantize whose every consumer, followed through
  quantisation-agnostic operations (reshapes, pooling by maximum, ...), lies
  in a float32 group is bypassed; one that also serves an INT8 layer stays;
* every constant input of a float32 node (weights stored as int8 with their
  scales, corrected biases) is put back as the original float32 constant.

Measured on the BP4D ResNet-50 model (2026-12-06, AMD EPYC, 2 cores, 4 + 4
face clips): with ``Backbone.stem`` alone in INT8 the outputs equal those
of its own NNCF run (float32 groups in the ignored scope) to the bit; with
``frame_differences`` alone, the same agreement and rank correlation and a
largest AU error of 2.11e-5 against 2.13e-5.  The comparison is
``python -m scripts.cpu_runners_int8_candidates``.
"""
from __future__ import annotations

import numpy as np


def quantize_once(model, calibration: list[np.ndarray], float32_nodes: list[str]):
    """``model`` (OpenVINO, float32) quantised by NNCF on ``calibration``,
    every node but ``float32_nodes`` (groups the search never quantises)."""
    import nncf

    return nncf.quantize(model.clone(), nncf.Dataset(calibration), preset=nncf.QuantizationPreset.PERFORMANCE,
                         subset_size=len(calibration),
                         ignored_scope=nncf.IgnoredScope(names=float32_nodes, validate=False))


def with_float32_nodes(quantized, original, float32_nodes: set[str]):
    """A copy of ``quantized`` computing ``float32_nodes`` as ``original``
    does (module doc)."""
    model = quantized.clone()
    agnostic = _agnostic_types()
    originals = {op.get_friendly_name(): op for op in original.get_ops()}
    for node in model.get_ordered_ops():
        name = node.get_friendly_name()
        if node.get_type_name() == "FakeQuantize":
            if _served(node.output(0), agnostic) <= float32_nodes:
                _bypass(node)
        elif name in float32_nodes and name in originals:
            _restore_constants(node, originals[name])
    model.validate_nodes_and_infer_types()
    return model


def _agnostic_types() -> set[str]:
    from nncf.openvino.graph.metatypes.groups import QUANTIZE_AGNOSTIC_OPERATIONS

    return {name for metatype in QUANTIZE_AGNOSTIC_OPERATIONS for name in metatype.op_names}


def _served(output, agnostic: set[str]) -> set[str]:
    """Names of the nodes that compute with ``output``'s values, followed
    through quantisation-agnostic nodes."""
    found, pending = set(), [output]
    while pending:
        for target in pending.pop().get_target_inputs():
            node = target.get_node()
            if node.get_type_name() in agnostic:
                pending.extend(node.outputs())
            else:
                found.add(node.get_friendly_name())
    return found


def _bypass(fake_quantize) -> None:
    source = fake_quantize.input_value(0)
    for target in list(fake_quantize.output(0).get_target_inputs()):
        target.replace_source_output(source)


def _restore_constants(node, original) -> None:
    from openvino import op

    for index in range(min(node.get_input_size(), original.get_input_size())):
        before = original.input_value(index).get_node()
        if before.get_type_name() != "Constant":
            continue
        now = node.input_value(index).get_node()
        if now.get_type_name() == "Constant" and np.array_equal(now.get_data(), before.get_data()):
            continue
        node.input(index).replace_source_output(op.Constant(np.array(before.get_data())).output(0))
