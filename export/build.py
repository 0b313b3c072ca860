"""``mdhr-build``: a TensorRT engine for an existing bundle, on the target GPU."""
from __future__ import annotations

from pathlib import Path

from mdhr.errors import MDHRError
from mdhr_export import parity
from mdhr_runtime.bundle import Bundle, load_bundle, write_card
from mdhr_runtime.outputs import check_output_file
from mdhr_runtime.runners import OnnxRuntimeRunner, tensorrt_unavailable_reason

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"


def build_into(folder: Path, card: dict, fp16: bool) -> dict:
    """Build ``model.engine`` inside ``folder`` from its fp32 ONNX, measure it
    against ONNX Runtime fp32 and record both in ``card`` (not yet saved)."""
    from mdhr_export.engine import build_engine
    from mdhr_runtime.tensorrt_runner import TensorRTRunner

    tmp_engine = folder / f".{ENGINE_FILE}.partial"
    try:
        info = build_engine(folder / card["artifacts"]["onnx"], tmp_engine, fp16, card.get("fp32_nodes", []),
                            timing_cache=folder / TIMING_CACHE_FILE)
        tmp_engine.replace(folder / ENGINE_FILE)
    finally:
        tmp_engine.unlink(missing_ok=True)
    card["artifacts"]["engine"] = ENGINE_FILE
    card["engine_build"] = info
    bundle = Bundle(Path(folder), card)
    clips = parity.parity_clips(bundle.batch, bundle.frames)
    reference = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"])
    engine = TensorRTRunner(bundle)
    report = parity.compare(parity.runner_outputs(reference, clips), parity.runner_outputs(engine, clips), card["threshold"])
    engine.close()
    reference.close()
    card.setdefault("parity", {})["tensorrt"] = {"reference": "onnxruntime-fp32-cpu", **report}
    return card


def build_bundle_engine(bundle_dir: Path, fp16: bool) -> dict:
    bundle = load_bundle(bundle_dir)  # the bundle and the files the build writes, before the GPU
    for name in (ENGINE_FILE, TIMING_CACHE_FILE):
        check_output_file(bundle.root / name, "BUNDLE")
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise MDHRError(f"cannot build a TensorRT engine here: {reason}; run mdhr-build on the target "
                        "GPU machine")
    card = build_into(bundle.root, dict(bundle.card), fp16)
    write_card(bundle.root, card)
    return card
