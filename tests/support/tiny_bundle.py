"""A tiny real bundle for the fast tier: the bundle's contract without the model.

Five ONNX graphs (``model.onnx``, ``frame_stage.onnx``, ``clip_stage.onnx``,
``frame_batch.onnx``, the frame stage over T/2 consecutive frames per call, and
``clip_centre.onnx``, the clip stage's outputs at the window's centre alone)
with the inputs, outputs and shapes of an exported MDHR bundle, sharing one
external weights file of about 100 kB, and a card like the exporter's. The
arithmetic is a few pools, 1x1 convolutions and matrix products instead of
ResNet-50 and the relation modelling, so a clip costs milliseconds, and it is
built with the ``onnx`` package alone (no torch).

What it keeps of the real model, because the runtime's behaviour depends on it:
- each frame's scores depend on the face crop (pooled colours), so a face, no
  face and another face give different rows;
- frame motion (``dynamics``) comes from the difference of this frame's taps
  and the previous frame's, exactly where the real frame stage takes it;
- a frame's scores depend on the whole window (a window mean is mixed in), so
  official and centred windows differ as they do with the real model;
- ``model.onnx`` computes what the two stages compute, frame by frame.
Scores are ``tanh`` values in [-1, 1] like the model's cosines.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mdhr.aus import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, au_set
from mdhr_runtime.bundle import FORMAT, write_card

OPSET = 18
WEIGHTS_FILE = "weights.bin"
STATIC_TOKENS, STATIC_WIDTH = 49, 512
MOTION_WIDTH = 528
TAPS = ((256, 4), (512, 8), (1024, 16), (2048, 32))  # (channels, stride): 56, 28, 14 and 7 pixels square
GRID = IMAGE_SIZE // 32  # 7
# How much of a frame's features is its window's mean: enough that official
# and centred windows give visibly different scores, as the real model's do.
WINDOW_CONTEXT = 2.0


class _Graph:
    """Collects nodes and the weights they use; weights are named once and
    shared across the three graphs through one external file."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights, self.nodes, self.used = weights, [], []
        self.count = 0

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        for name in inputs:
            if name in self.weights and name not in self.used:
                self.used.append(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, name: str, values) -> str:
        self.weights.setdefault(name, np.asarray(values))
        return name

    def rename(self, value: str, name: str) -> str:
        self.nodes.append(helper.make_node("Identity", [value], [name]))
        return name


def _weights(num_aus: int, regions: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = lambda *shape, scale=1.0: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    weights = {f"tap{k}.w": normal(c, 3, 1, 1) for k, (c, _) in enumerate(TAPS, 1)}
    weights["static.w"] = normal(STATIC_WIDTH, 3, 1, 1)
    weights.update({f"motion{k}.w": normal(1, MOTION_WIDTH, 1, 1) for k in range(1, 5)})
    weights.update({f"mean{k}.w": np.full((1, c, 1, 1), 1 / c, dtype=np.float32) for k, (c, _) in enumerate(TAPS, 1)})
    for name, width in {"au": num_aus, **{f"region_{r}": n for r, n in regions.items()}}.items():
        weights[f"{name}.w"] = normal(STATIC_WIDTH, width, scale=0.5 / np.sqrt(STATIC_WIDTH))
        weights[f"{name}.motion"] = normal(1, 1, width, scale=4.0)
        weights[f"{name}.b"] = normal(width, scale=0.1)
    return weights


def _taps(g: _Graph, frames: str) -> list[str]:
    """Four feature maps of the frames [n, 3, 224, 224], like the backbone's four scales."""
    return [g.op("Conv", g.op("AveragePool", frames, kernel_shape=[s, s], strides=[s, s]), f"tap{k}.w")
            for k, (_, s) in enumerate(TAPS, 1)]


def _static(g: _Graph, frames: str, leading: list[int]) -> str:
    """[n, 3, 224, 224] -> [*leading, 49, 512] tokens from the crop's mean
    colour: like the real features, they barely move when the crop shifts by
    a pixel or two (a tracker's jitter), and they differ between faces."""
    pooled = g.op("Conv", g.op("GlobalAveragePool", frames), "static.w")  # [n, 512, 1, 1]
    tokens = g.op("Expand", g.op("Reshape", pooled, g.const("shape.static", [-1, 1, STATIC_WIDTH])),
                  g.const("shape.tokens", [1, STATIC_TOKENS, STATIC_WIDTH]))
    return g.op("Reshape", tokens, g.const("shape.static" + "x".join(map(str, leading)), [*leading, STATIC_TOKENS, STATIC_WIDTH]))


def _motion(g: _Graph, taps: list[str], previous: list[str]) -> str:
    """The pair (previous, this) of each scale -> [n, 4, 528, 7, 7]."""
    scales = []
    for k, (tap, before, (_, stride)) in enumerate(zip(taps, previous, TAPS), 1):
        size = IMAGE_SIZE // stride // GRID
        change = g.op("AveragePool", g.op("Sub", tap, before), kernel_shape=[size, size], strides=[size, size])
        # the channel mean as a 1x1 convolution: computed per frame, so a batch of
        # frames gives each frame's bits as one frame does (ReduceMean's order varies with the batch)
        mixed = g.op("Mul", g.op("Conv", change, f"mean{k}.w"), f"motion{k}.w")
        scales.append(g.op("Unsqueeze", mixed, g.const("axes.one", [1])))
    return g.op("Concat", *scales, axis=1)


def _clip(g: _Graph, static: str, dynamics: str, frames: int, outputs: dict[str, int],
          only: int | None = None) -> list[str]:
    """static [1, T, 49, 512], dynamics [1, T-1, 4, 528, 7, 7] -> one output per head [1, T, width]
    (``only``: [1, 1, width], that window position's: the centre-only clip stage's contract)."""
    tokens = g.op("ReduceMean", static, g.const("axes.tokens", [2]), keepdims=0)  # [1, T, 512]
    window = g.op("ReduceMean", tokens, g.const("axes.one", [1]), keepdims=1)  # the window's context
    features = g.op("Add", tokens, g.op("Mul", window, g.const("context", np.float32(WINDOW_CONTEXT))))
    motion = g.op("ReduceMean", dynamics, g.const("axes.motion", [2, 3, 4, 5]), keepdims=0)  # [1, T-1]
    motion = g.op("Pad", motion, g.const("pads.first", [0, 1, 0, 0]))  # the first frame has no pair
    motion = g.op("Unsqueeze", motion, g.const("axes.last", [2]))  # [1, T, 1]
    results = []
    for name, head in outputs.items():
        logits = g.op("Add", g.op("Add", g.op("MatMul", features, f"{head}.w"),
                                  g.op("Mul", motion, f"{head}.motion")), f"{head}.b")
        result = g.op("Tanh", logits) if head == "au" else logits
        if only is not None:
            result = g.op("Slice", result, g.const(f"position.{only}", [only]), g.const(f"position.{only}.end", [only + 1]),
                          g.const("axes.one", [1]))
        results.append(g.rename(result, name))
    return results


def _value(name: str, shape: list[int]):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(g: _Graph, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, "tiny_mdhr", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.tiny")
    model.ir_version = 9
    return model


def _with_external_weights(model: onnx.ModelProto, g: _Graph, offsets: dict[str, tuple[int, int]]) -> None:
    for name in g.used:
        array = g.weights[name]
        if name not in offsets:  # shapes, axes and scalars stay in the graph, as shape inference needs them
            model.graph.initializer.append(numpy_helper.from_array(array, name))
            continue
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        offset, length = offsets[name]
        for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
            tensor.external_data.add(key=key, value=value)
        model.graph.initializer.append(tensor)


def make_tiny_bundle(out: Path, dataset: str = "DISFA", frames: int = 4, seed: int = 0) -> Path:
    """Write a tiny bundle folder at ``out`` (which must not exist) and return it."""
    aus = au_set(dataset)
    regions = {region.name: region.num_classes for region in aus.regions}
    heads = {"au_scores": "au", **{f"region_{r}": f"region_{r}" for r in regions}}
    widths = {name: (aus.num_aus if head == "au" else regions[name.removeprefix("region_")])
              for name, head in heads.items()}
    weights = _weights(aus.num_aus, regions, seed)
    tap_shapes = {f"tap{k}": [1, c, IMAGE_SIZE // s, IMAGE_SIZE // s] for k, (c, s) in enumerate(TAPS, 1)}
    motion_shape = [4, MOTION_WIDTH, GRID, GRID]

    frame = _Graph(weights)
    taps = _taps(frame, "frame")
    frame_outputs = [frame.rename(_static(frame, "frame", [1]), "static"),
                     frame.rename(_motion(frame, taps, [f"previous_{t}" for t in tap_shapes]), "dynamics"),
                     *(frame.rename(tap, name) for tap, name in zip(taps, tap_shapes))]
    frame_model = _model(frame, [_value("frame", [1, 3, IMAGE_SIZE, IMAGE_SIZE]),
                                 *(_value(f"previous_{t}", shape) for t, shape in tap_shapes.items())],
                         [_value("static", [1, STATIC_TOKENS, STATIC_WIDTH]), _value("dynamics", [1, *motion_shape]),
                          *(_value(t, shape) for t, shape in tap_shapes.items())])
    del frame_outputs
    batch_model, batch = _frame_batch(weights, tap_shapes, motion_shape, max(frames // 2, 1))

    clip_model, clip = _clip_graph(weights, frames, heads, widths, motion_shape)
    # the clip stage's outputs at the centre frame alone ([1, 1, width])
    centre_model, centre = _clip_graph(weights, frames, heads, widths, motion_shape, only=frames // 2)

    whole = _Graph(weights)
    images = whole.op("Reshape", "clips", whole.const("shape.frames", [frames, 3, IMAGE_SIZE, IMAGE_SIZE]))
    all_taps = _taps(whole, images)
    before = [whole.op("Slice", t, whole.const("zero", [0]), whole.const("last", [frames - 1]),
                       whole.const("axes.zero", [0])) for t in all_taps]
    after = [whole.op("Slice", t, whole.const("one", [1]), whole.const("end", [frames]),
                      whole.const("axes.zero", [0])) for t in all_taps]
    dynamics = whole.op("Unsqueeze", _motion(whole, after, before), whole.const("axes.zero", [0]))
    _clip(whole, _static(whole, images, [1, frames]), dynamics, frames, heads)
    whole_model = _model(whole, [_value("clips", [1, frames, 3, IMAGE_SIZE, IMAGE_SIZE])],
                         [_value(name, [1, frames, width]) for name, width in widths.items()])

    out.mkdir(parents=True)
    offsets, blob = {}, bytearray()
    for name, array in weights.items():
        if array.dtype != np.float32 or array.ndim == 0:
            continue
        data = np.ascontiguousarray(array).tobytes()
        offsets[name] = (len(blob), len(data))
        blob += data
    (out / WEIGHTS_FILE).write_bytes(bytes(blob))
    files = {"onnx": "model.onnx", "frame_stage": "frame_stage.onnx", "clip_stage": "clip_stage.onnx",
             "frame_batch": "frame_batch.onnx", "clip_centre": "clip_centre.onnx"}
    for kind, model, graph in (("onnx", whole_model, whole), ("frame_stage", frame_model, frame),
                               ("clip_stage", clip_model, clip), ("frame_batch", batch_model, batch),
                               ("clip_centre", centre_model, centre)):
        _with_external_weights(model, graph, offsets)
        onnx.save(model, out / files[kind])
        onnx.checker.check_model(str(out / files[kind]))
    write_card(out, _card(dataset, frames, aus.au_names, regions, list(heads), tap_shapes, motion_shape, files, out))
    return out


def _clip_graph(weights, frames: int, heads: dict[str, str], widths: dict[str, int], motion_shape: list[int],
                only: int | None = None) -> tuple[onnx.ModelProto, _Graph]:
    """The clip stage over a window of ``frames`` (``only``: its outputs at that position alone)."""
    g = _Graph(weights)
    _clip(g, "static", "dynamics", frames, heads, only)
    model = _model(g, [_value("static", [1, frames, STATIC_TOKENS, STATIC_WIDTH]),
                       _value("dynamics", [1, frames - 1, *motion_shape])],
                   [_value(name, [1, frames if only is None else 1, width]) for name, width in widths.items()])
    return model, g


def _frame_batch(weights, tap_shapes: dict, motion_shape: list[int], n: int) -> tuple[onnx.ModelProto, _Graph]:
    """The frame stage over ``n`` consecutive frames: each frame's
    predecessor is the one before it, the first's the ``previous_*`` taps;
    the last frame's taps come out (the exporter's ``FrameRun`` contract)."""
    g = _Graph(weights)
    taps = _taps(g, "frame")
    before = [g.op("Concat", f"previous_{t}", g.op("Slice", tap, g.const("zero", [0]), g.const("batch.last", [n - 1]),
                                                  g.const("axes.zero", [0])), axis=0)
              for tap, t in zip(taps, tap_shapes)]
    g.rename(_static(g, "frame", [n]), "static")
    g.rename(_motion(g, taps, before), "dynamics")
    for tap, name in zip(taps, tap_shapes):
        g.rename(g.op("Slice", tap, g.const("batch.last", [n - 1]), g.const("batch.end", [n]),
                      g.const("axes.zero", [0])), name)
    model = _model(g, [_value("frame", [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
                       *(_value(f"previous_{t}", shape) for t, shape in tap_shapes.items())],
                   [_value("static", [n, STATIC_TOKENS, STATIC_WIDTH]), _value("dynamics", [n, *motion_shape]),
                    *(_value(t, shape) for t, shape in tap_shapes.items())])
    return model, g


def _card(dataset, frames, au_names, regions, outputs, tap_shapes, motion_shape, files, out) -> dict:
    """The card mdhr-export writes for an untrained model (default target, no --fp16), with these graphs' facts."""
    artifacts = {"onnx": files["onnx"], "onnx_fp16": None, "engine": None, "weights": WEIGHTS_FILE,
                 "frame_stage": files["frame_stage"], "clip_stage": files["clip_stage"],
                 "frame_batch": files["frame_batch"], "clip_centre": files["clip_centre"]}
    return {
        "format": FORMAT, "dataset": dataset, "backbone": "resnet", "au_names": list(au_names), "threshold": 0.5,
        "input": {"name": "clips", "shape": [1, frames, 3, IMAGE_SIZE, IMAGE_SIZE],
                  "layout": "RGB, pixel/255 then (x - mean) / std", "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
        "outputs": outputs, "regions": regions, "untrained": True, "target": "all",
        "source": {"checkpoint_sha256": None, "torch": None, "onnx": onnx.__version__, "opset": OPSET},
        "artifacts": artifacts,
        "stages": {"cut": "tiny test graphs with the stages' contract",
                   "frame_stage": {"inputs": {"frame": [1, 3, IMAGE_SIZE, IMAGE_SIZE],
                                              **{f"previous_{t}": s for t, s in tap_shapes.items()}},
                                   "outputs": {"static": [1, STATIC_TOKENS, STATIC_WIDTH],
                                               "dynamics": [1, *motion_shape], **tap_shapes}},
                   "clip_stage": {"inputs": {"static": [1, frames, STATIC_TOKENS, STATIC_WIDTH],
                                             "dynamics": [1, frames - 1, *motion_shape]},
                                  "outputs": outputs},
                   "cached_bytes_per_frame": 4 * (STATIC_TOKENS * STATIC_WIDTH + 4 * MOTION_WIDTH * GRID * GRID),
                   "frame_batch": {"frames": max(frames // 2, 1), "bit_identical": True},
                   "clip_centre": {"position": frames // 2, "bit_identical": True}},
        "artifact_bytes": {kind: (out / name).stat().st_size for kind, name in artifacts.items() if name},
    }
