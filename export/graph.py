"""From the PyTorch model to a checked, simplified static-shape ONNX graph."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from mdhr.model import MDHR

INPUT_NAME = "clips"
OPSETS = range(18, 24)  # what torch's dynamo exporter writes and TensorRT 10 parses
DEFAULT_OPSET = 18
TENSORRT_OPS = Path(__file__).with_name("tensorrt_onnx_ops.json")


def output_names(model: MDHR) -> list[str]:
    return ["au_scores", *(f"region_{name}" for name in model.aus.region_order)]


class ClipOutputs(nn.Module):
    """The official outputs regrouped per clip and frame: ``au_scores``
    [B, T, N] first, then each region's logits [B, T, k]."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor):
        B, T = clips.shape[:2]
        *regions, au = self.model(clips)
        return tuple(o.unflatten(0, (B, T)) for o in (au, *regions))


def export_onnx(model: MDHR, batch: int, frames: int, opset: int, chatty: bool = False) -> onnx.ModelProto:
    example = torch.zeros(batch, frames, 3, 224, 224)
    return export_module(ClipOutputs(model).eval(), (example,), opset, chatty, [INPUT_NAME], output_names(model))


def export_module(module: nn.Module, example: tuple, opset: int, chatty: bool,
                  input_names: list[str], output_names: list[str]) -> onnx.ModelProto:
    """A static-shape ONNX of ``module`` at the shapes of ``example``."""
    with _quiet(not chatty):
        program = torch.onnx.export(module, example, dynamo=True, opset_version=opset,
                                    input_names=input_names, output_names=output_names,
                                    optimize=True, verbose=False)
    return program.model_proto


@contextlib.contextmanager
def _quiet(enabled: bool):
    """The exporter narrates each stage on stdout and warns about optional
    packages we do not use (torchvision); keep the user's terminal for our
    own progress lines unless they asked for details."""
    if not enabled:
        yield
        return
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def check(proto: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX checker and strict shape inference; every output's shape static.
    ``proto`` comes back with the inferred value_info and output types."""
    inferred = _infer_without_weights(proto)
    for value in inferred.graph.output:
        dims = value.type.tensor_type.shape.dim
        if not dims or any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"output {value.name} has no static shape")
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(inferred.graph.value_info)
    for mine, found in zip(proto.graph.output, inferred.graph.output):
        mine.CopyFrom(found)
    return proto


def _infer_without_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Checker and shape inference on the graph with its large weights turned
    into typed inputs.  Both need only the weights' types and shapes, and on
    the full model they copy it several times over (1.4 GB for ResNet-50,
    more for Swin-B); small initializers stay, as shapes may be computed
    from them."""
    skeleton = onnx.ModelProto(ir_version=proto.ir_version, producer_name=proto.producer_name)
    skeleton.opset_import.extend(proto.opset_import)
    skeleton.functions.extend(proto.functions)
    graph = skeleton.graph
    graph.name = proto.graph.name
    graph.node.extend(proto.graph.node)
    graph.input.extend(proto.graph.input)
    graph.output.extend(proto.graph.output)
    for tensor in proto.graph.initializer:
        if tensor.ByteSize() > 4096:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
        else:
            graph.initializer.append(tensor)
    onnx.checker.check_model(skeleton, full_check=False)
    return onnx.shape_inference.infer_shapes(skeleton, check_type=True, strict_mode=True)


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and graph clean-up (onnxslim)."""
    import onnxslim

    return onnxslim.slim(proto)


def set_metadata(proto: onnx.ModelProto, card: dict) -> None:
    del proto.metadata_props[:]
    for key, value in card.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"mdhr.{key}", json.dumps(value)
    proto.doc_string = "MDHR facial action unit recognition (exported by mdhr-toolkit)"


# The temporal difference of backbone features: near-identical consecutive
# frames make it a small difference of large numbers, where FP16 loses
# precision first.  These nodes (the subtraction and the convolution that
# reads it) stay in FP32 in reduced-precision builds, in the whole model
# (MultiscaleFacialDynamic differences) and in the frame stage (FrameStage).
_FP32_SCOPE = re.compile(r"(MultiscaleFacialDynamic|FrameStage)/(sub(_\d+)?|([\w.]+\.)?MFD\.(conv|bn)[1-4]):")


def precision_sensitive_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the frame differences (by the module
    scope the exporter records on each node)."""
    def scope(node):
        return next((p.value for p in node.metadata_props if p.key == "namespace"), "")

    return [node.name for node in proto.graph.node if _FP32_SCOPE.search(scope(node))]


# The region and AU modelling (MDHR.relationships: LocalRelationshipModeling
# with the region heads, the gated cross-region graph, the temporal
# convolution and the classifier): about 5 of 230 GFLOP per clip, and where
# reduced precision hurts agreement most (shared/reference, "Where reduced
# precision hurts").  Its first nodes are named; the runtime keeps
# everything downstream of them in float32 too.
_REGION_SCOPE = re.compile(r"MDHR/([\w.]+\.)?(LRM|CRM|TCN|node_classifier): ")


def reduced_precision_islands(proto: onnx.ModelProto) -> dict[str, list[str]]:
    """The parts a reduced-precision CPU build keeps in float32, by node
    name: ``region_modelling`` (a part: its nodes and all downstream) and
    ``frame_differences`` (single nodes, as the FP16 ONNX keeps them)."""
    def scope(node):
        return next((p.value for p in node.metadata_props if p.key == "namespace"), "")

    return {"region_modelling": [node.name for node in proto.graph.node if _REGION_SCOPE.search(scope(node))],
            "frame_differences": precision_sensitive_nodes(proto)}


def tensorrt_support() -> dict:
    return json.loads(TENSORRT_OPS.read_text())


_ONNX_TYPE_NAMES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "FLOAT16",
                    onnx.TensorProto.BFLOAT16: "BFLOAT16", onnx.TensorProto.INT32: "INT32",
                    onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
                    onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
                    onnx.TensorProto.DOUBLE: "DOUBLE"}


def tensorrt_problems(proto: onnx.ModelProto) -> list[str]:
    """Operators or tensor types of the graph that TensorRT's ONNX parser
    does not support (per the support matrix in tensorrt_onnx_ops.json)."""
    support = tensorrt_support()
    ops = support["operators"]
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    problems = []
    if not support["opset_min"] <= opset <= support["opset_max"]:
        problems.append(f"opset {opset} outside {support['opset_min']}..{support['opset_max']}")
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({init.name: init.data_type for init in proto.graph.initializer})
    for node in proto.graph.node:
        if node.op_type not in ops:
            problems.append(f"{node.name}: operator {node.op_type} unsupported")
            continue
        for position, tensor in enumerate(node.input):
            name = _ONNX_TYPE_NAMES.get(types.get(tensor), "UNKNOWN") if tensor else None
            # later inputs of shape/index kind (Reshape shape, Slice starts) are INT64 by spec
            index_input = position > 0 and name == "INT64"
            if name and name not in ops[node.op_type] and not index_input:
                problems.append(f"{node.name}: {node.op_type} on {name} unsupported")
    return problems
