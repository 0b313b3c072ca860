"""The model's layer groups for the INT8 search: the parts that can stay
float32 one at a time.

The exported graph keeps the official module names only on its weights
(``model.Backbone.layer3.0.conv1.weight``), so each weighted layer
(convolution or matrix product) joins the group of the module its weight
belongs to: a backbone stage (``Backbone.layer3``; ``Backbone.stem`` for the
first convolution), else the top-level module (``MFD``, the dynamic branch).
A weight without a module name (a fused linear) and every node without a
weight join the group of the weighted layer before them in execution order.
Two groups come from the card's named islands instead: the frame
differences (the subtractions and the convolutions that read them) and the
region and AU modelling (its first nodes and everything downstream, as the
bf16 runner keeps it).  Every node belongs to exactly one group; the nodes
are OpenVINO's names, which NNCF's ignored scope takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdhr_runtime.backends.openvino_runner import mark_fp32_islands

REGION_MODELLING, FRAME_DIFFERENCES = "region_modelling", "frame_differences"
WEIGHTED = {"Convolution", "GroupConvolution", "MatMul"}


@dataclass(frozen=True)
class LayerGroup:
    name: str
    nodes: tuple[str, ...]  # OpenVINO friendly names
    weighted_layers: int
    macs_share: float  # of the whole model's multiply-accumulates per clip


def macs(op) -> int:
    """Multiply-accumulates of one weighted layer (0 for any other node)."""
    kind = op.get_type_name()
    if kind not in WEIGHTED or not op.get_output_partial_shape(0).is_static:
        return 0
    out = int(np.prod(list(op.get_output_shape(0))))
    weights = list(op.input_value(1).get_shape())
    if kind == "Convolution":  # weights [O, I, kh, kw]: each output sums I*kh*kw products
        return out * int(np.prod(weights[1:]))
    if kind == "GroupConvolution":  # [G, O/G, I/G, kh, kw]
        return out * int(np.prod(weights[2:]))
    transposed = op.get_attributes().get("transpose_a", False)
    first = list(op.input_value(0).get_shape())
    return out * int(first[-2] if transposed else first[-1])


def module_of(op) -> str | None:
    """The official module a weighted layer's weight belongs to, or None."""
    source = op.input_value(1).get_node()
    if source.get_type_name() != "Constant" or not source.get_friendly_name().startswith("model."):
        return None
    path = source.get_friendly_name().removeprefix("model.").split(".")
    if path[0] == "Backbone":
        return "Backbone.stem" if len(path) < 4 else f"Backbone.{path[1]}"
    return path[0]


def layer_groups(model, islands: dict[str, list[str]]) -> list[LayerGroup]:
    """``model`` (OpenVINO, the fp32 ONNX as read) cut into groups, in the
    order their first node runs."""

    region = mark_fp32_islands(model.clone(), {REGION_MODELLING: islands[REGION_MODELLING]})
    differences = set(islands.get(FRAME_DIFFERENCES, []))
    ops = model.get_ordered_ops()
    cost = {op.get_friendly_name(): macs(op) for op in ops}
    members: dict[str, list[str]] = {}
    current = None
    for op in ops:
        name = op.get_friendly_name()
        if name in region:
            group = REGION_MODELLING
        elif name.split("/")[0] in differences:
            group = FRAME_DIFFERENCES
        else:
            if op.get_type_name() in WEIGHTED:
                current = module_of(op) or current
            group = current or "input"
        members.setdefault(group, []).append(name)
    if "input" in members:  # the reshapes before the first convolution: with the first stage
        first = next(g for g in members if g != "input")
        members[first] = members.pop("input") + members[first]
    total = sum(cost.values()) or 1
    return [LayerGroup(group, tuple(nodes), sum(1 for n in nodes if cost[n]),
                       round(sum(cost[n] for n in nodes) / total, 4)) for group, nodes in members.items()]
