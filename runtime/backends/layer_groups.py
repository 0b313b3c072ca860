"""The model's layer groups for the reduced-precision searches (INT8 and
bf16, at export) and the bf16 runner: the parts that can stay float32 one
at a time.

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

``keep_fp32`` marks the named groups' nodes to stay float32 in a model
compiled for bf16 (what the export's bf16 search chose, card ``bf16``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdhr.errors import BundleError
from mdhr_runtime.card import Card

REGION_MODELLING, FRAME_DIFFERENCES = "region_modelling", "frame_differences"
KEEP_ORIGINAL_PRECISION = "disable_fp16_compression_0"  # ov::DisableFP16Compression's key
# What bf16 keeps float32.  Emulated bf16 on the BP4D ResNet model, 12 real
# face clips (python -m scripts.bundles_bf16_islands): decisions at the AU
# medians agreed on 91.1% with bf16 everywhere, 94.3% with the region
# modelling in fp32 (lowest rank correlation 0.978 -> 0.995), and 94.3% with
# the frame differences in fp32 too: those buy nothing, so they run bf16.
BF16_FP32_PARTS = ("region_modelling",)
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


def mark_fp32_islands(model, islands: dict[str, list[str]]) -> set[str]:
    """Keep the islands' nodes in their original (float32) precision; returns
    the friendly names of the nodes marked.  ``islands["region_modelling"]``
    names the first nodes of a part whose every downstream node is marked
    too (the part ends at the outputs; helper nodes OpenVINO adds when it
    decomposes an ONNX operator have no ONNX name but lie downstream);
    ``islands["frame_differences"]``, if given, names single nodes."""
    ops = model.get_ordered_ops()  # topological order: producers first
    seeds = set(islands.get("region_modelling", []))
    exact = set(islands.get("frame_differences", []))
    marked, downstream = set(), set()
    for op in ops:
        name = op.get_friendly_name()
        onnx_name = name.split("/")[0]  # "node_Conv_7/WithoutBiases": the convolution of ONNX node node_Conv_7
        reads_island = any(value.get_node().get_friendly_name() in downstream for value in op.input_values())
        if onnx_name in seeds or (reads_island and op.get_type_name() != "Result"):
            downstream.add(name)
        if name in downstream or onnx_name in exact:
            op.get_rt_info()[KEEP_ORIGINAL_PRECISION] = ""
            marked.add(name)
    found = {op.get_friendly_name().split("/")[0] for op in ops} & (seeds | exact)
    if "region_modelling" in islands and not found & seeds:
        raise BundleError("none of the float32 islands named in the bundle's card is in its model; export it again")
    return marked


def keep_fp32(model, groups: list[str], islands: dict[str, list[str]]) -> int:
    """Mark every node of ``groups`` (names of ``layer_groups``) to keep its
    float32 precision when ``model`` compiles for bf16; how many were marked."""
    wanted = set(groups)
    found = layer_groups(model, islands)
    unknown = sorted(wanted - {group.name for group in found})
    if unknown:
        raise BundleError(f"the bundle's card keeps the layer groups {', '.join(unknown)} float32 under bf16, but its "
                          "model has no such group; export it again")
    nodes = {node for group in found if group.name in wanted for node in group.nodes}
    marked = 0
    for op in model.get_ordered_ops():
        if op.get_friendly_name() in nodes:
            op.get_rt_info()[KEEP_ORIGINAL_PRECISION] = ""
            marked += 1
    return marked


def islands_of(card: Card) -> dict[str, list[str]]:
    """The card's float32 islands as ``layer_groups`` and ``mark_fp32_islands`` take them."""
    return {part: list(nodes) for part, nodes in card.islands.items()}


def keep_bf16_islands(model, card: Card) -> int:
    """What bf16 keeps float32: the layer groups the export's bf16 search
    chose (card ``bf16.kept_fp32``), else ``BF16_FP32_PARTS``; how many
    nodes were marked."""
    islands = islands_of(card)
    chosen = card.bf16.kept_fp32 if card.bf16 is not None else None
    if chosen is None:
        return len(mark_fp32_islands(model, {part: islands[part] for part in BF16_FP32_PARTS}))
    return keep_fp32(model, list(chosen), islands)
