"""The front half end to end: a real video file through FrameSource,
FaceTracker, crop_stream and ClipWindows into a real ONNX Runtime session
(a tiny stand-in model with MDHR's input and output shapes), then
FrameTable's CSV.  Also: the runtime never imports torch."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mdhr.aus import BP4D
from mdhr_runtime.clips import ClipWindows
from mdhr_runtime.crop import crop_stream
from mdhr_runtime.faces import FaceTracker
from mdhr_runtime.frames import FrameSource
from mdhr_runtime.synthetic import FootageMaker, Segment, write_video
from mdhr_runtime.table import FrameTable

DATA = Path(__file__).parent / "data"


def stand_in_model(path: Path, batch: int, frames: int, num_aus: int) -> None:
    """ONNX model clips [B, T, 3, 224, 224] -> au_scores [B, T, num_aus]:
    tanh of each frame's mean pixel times a per-AU weight."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weights = np.linspace(0.5, 3.0, num_aus, dtype=np.float32).reshape(1, num_aus)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["clips"], ["mean"], axes=[2, 3, 4], keepdims=1),
            helper.make_node("Reshape", ["mean", "shape"], ["per_frame"]),
            helper.make_node("MatMul", ["per_frame", "weights"], ["raw"]),
            helper.make_node("Tanh", ["raw"], ["au_scores"]),
        ],
        "stand_in",
        [helper.make_tensor_value_info("clips", TensorProto.FLOAT, [batch, frames, 3, 224, 224])],
        [helper.make_tensor_value_info("au_scores", TensorProto.FLOAT, [batch, frames, num_aus])],
        initializer=[
            helper.make_tensor("shape", TensorProto.INT64, [3], [batch, frames, 1]),
            helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.ravel()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_video_to_csv_through_a_real_onnx_session(tmp_path):
    import onnxruntime as ort

    photo = cv2.cvtColor(cv2.imread(str(DATA / "face.jpg")), cv2.COLOR_BGR2RGB)
    made = list(FootageMaker(photo).frames((Segment("clean", 20), Segment("empty", 10), Segment("clean", 7))))
    video = tmp_path / "clip.mp4"
    write_video(video, [f.rgb for f in made])
    model_path = tmp_path / "stand_in.onnx"
    stand_in_model(model_path, batch=2, frames=16, num_aus=BP4D.num_aus)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape

    table = FrameTable(BP4D.au_names)
    windows = ClipWindows.for_input_shape(shape)
    for batch in windows.batches(crop_stream(FrameSource(video), FaceTracker())):
        (scores,) = session.run(["au_scores"], {"clips": batch.clips})
        table.add_batch(batch, scores)

    path = table.write_csv(tmp_path / "clip.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["frame"]) for r in rows] == list(range(1, 38))  # every frame, once, in order
    for row, truth in zip(rows, made):
        if truth.truth is None:
            assert row["success"] == "0" and row["AU01_score"] == "" and row["AU24_c"] == ""
        else:
            assert row["success"] == "1" and -1 <= float(row["AU12_score"]) <= 1
            assert row["AU12_c"] in ("0", "1")


def test_runtime_does_not_import_torch():
    code = ("import sys, mdhr_runtime, mdhr_runtime.frames, mdhr_runtime.faces, mdhr_runtime.crop, "
            "mdhr_runtime.clips, mdhr_runtime.table, mdhr_runtime.plot, mdhr_runtime.synthetic; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
