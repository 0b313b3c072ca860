"""Each weight once per precision.

A bundle's graphs of one precision (the whole model and the frame and clip
stages) hold mostly the same tensors: the frame stage is the backbone and
the dynamic branch, the clip stage the rest.  Here they keep their large
initializers as ONNX external data in one file per precision, each tensor
at an offset of its own; a tensor another graph already stored (same type,
shape and bytes) points at the same offset.  External data with offsets
is part of the ONNX format, so every reader that opens a graph by its path
(ONNX Runtime, OpenVINO, TensorRT's parser, ``onnx.checker``) reads it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import numpy_helper

FILES = {"fp32": "weights.bin", "fp16": "weights_fp16.bin"}
KINDS = {"fp32": "weights", "fp16": "weights_fp16"}  # the card's artifact kinds
# Small tensors (shapes, scalars, axes) stay inside the graph, where shape
# inference and constant folding read them.
INLINE_BYTES = 1024
# Page-aligned offsets let a reader map the weights rather than copy them.
ALIGNMENT = 4096


@dataclass
class WeightsFile:
    """One precision's weights file in a folder and what it holds: a key
    (type, shape, content digest) per stored tensor, with its offset and
    length.  Passed to and returned from the export's child processes."""

    path: Path
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)

    def place(self, tensor: onnx.TensorProto, out) -> tuple[int, int]:
        """Where ``tensor``'s bytes lie in the file (appended to ``out``, the
        file open for appending, unless an equal tensor is there already)."""
        data = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
        key = f"{tensor.data_type}:{list(tensor.dims)}:{hashlib.sha256(data).hexdigest()}"
        if key not in self.stored:
            padding = -out.tell() % ALIGNMENT
            out.write(b"\0" * padding)
            offset = out.tell()
            out.write(data)
            self.stored[key] = (offset, len(data))
        return self.stored[key]


def save_sharing(proto: onnx.ModelProto, path: Path, weights: WeightsFile) -> WeightsFile:
    """Write ``proto`` to ``path`` with its large initializers in
    ``weights`` (a file in the same folder); returns ``weights`` with what
    it now holds."""
    if Path(path).parent != weights.path.parent:
        raise ValueError("a graph and its weights file must share a folder")
    with open(weights.path, "ab") as out:
        for tensor in proto.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise ValueError(f"{tensor.name}: load the graph with its external data before saving it")
            if tensor.ByteSize() < INLINE_BYTES:
                continue
            offset, length = weights.place(tensor, out)
            _point_at(tensor, weights.path.name, offset, length)
    onnx.save_model(proto, str(path))
    return weights


def _point_at(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(name)
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL
