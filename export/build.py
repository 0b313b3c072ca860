"""``mdhr-build``: a TensorRT engine for an existing bundle, on the target
GPU, kept only when it agrees with the fp32 ONNX on the parity clips."""
from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from mdhr.errors import MDHRError
from mdhr_export import parity
from mdhr_export.engine import build_engine
from mdhr_export.staging import Written
from mdhr_runtime.backends.gpu import visible_gpu
from mdhr_runtime.backends.selection import tensorrt_unavailable_reason
from mdhr_runtime.backends.stages import STAGE_ENGINE_KINDS, STAGE_KINDS, StageRunner, has_stages, official_windows
from mdhr_runtime.backends.tensorrt_runner import quiet_polygraphy
from mdhr_runtime.bundle import Bundle, load_bundle, seal, write_card
from mdhr_runtime.card import Card, EngineBuild
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.files.outputs import check_output_file

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
ONNX_FOR_PRECISION = {"fp16": "onnx_fp16", "fp32": "onnx"}
STAGE_ENGINE_FILES = dict(zip(STAGE_ENGINE_KINDS, ("frame_stage.engine", "clip_stage.engine")))


def engine_source(bundle: Bundle, precision: str) -> Path:
    """The ONNX an engine of ``precision`` is built from: strongly typed, the
    engine computes in the ONNX's own types."""
    kind = ONNX_FOR_PRECISION[precision]
    path = bundle.verified(kind)
    if path is None:
        raise MDHRError(f"{bundle.root}: no {precision} ONNX in this bundle to build the engine from; "
                        + bundle.export_hint(kind))
    return path


def engine_parity(bundle: Bundle, engine: Path, precision: str) -> tuple[dict, dict]:
    """Run the fp32 ONNX (ONNX Runtime, CPU) and the engine on the parity
    clips with Polygraphy's Comparator; judge with our measures.  Also
    returns the fp32 ONNX's outputs, the reference for the stage engines.
    A bundle for --target gpu has no fp32 ONNX but those outputs, saved at
    export."""
    from polygraphy.backend.trt import EngineFromPath, TrtRunner

    engine_runner = TrtRunner(EngineFromPath(str(engine)), name="tensorrt")
    stored = bundle.verified("parity_reference")
    if bundle.artifact("onnx") is None and stored is not None:
        (candidate,) = comparator_outputs([engine_runner], bundle)
        reference = saved_reference(stored)
    else:
        reference, candidate = comparator_outputs([fp32_onnx_runner(bundle), engine_runner], bundle)
    return judge(reference, candidate, bundle, precision), reference


def fp32_onnx_runner(bundle: Bundle):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(bundle.verified("onnx")), providers=["cpu"]), name="onnxruntime")


def saved_reference(path: Path) -> dict:
    import numpy as np

    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def judge(reference: dict, candidate: dict, bundle: Bundle, precision: str) -> dict:
    """The agreement report, passed or not by the gate of ``precision``."""
    return {"reference": "onnxruntime-fp32-cpu", "precision": precision,
            **parity.judged(reference, candidate, bundle.threshold, bundle.au_names, fp32=precision == "fp32")}


def comparator_outputs(runners: list, bundle: Bundle) -> list[dict]:
    """Each runner's outputs on the parity clips, joined along the batch
    axis, as Polygraphy's Comparator ran them."""
    from polygraphy.comparator import Comparator

    feeds = [{bundle.card.input.name: clips} for clips in parity.parity_clips(bundle.batch, bundle.frames)]
    results = Comparator.run(runners, data_loader=feeds)
    return [parity.concat([{name: iteration[name] for name in bundle.card.outputs} for iteration in iterations])
            for _runner_name, iterations in results]


def build_into(folder: Path, card: Card, precision: str) -> Card:
    """Build ``model.engine`` in ``folder`` from the ONNX of ``precision``,
    check it against ONNX Runtime fp32: ``card`` (sealed) with both,
    re-sealed (not yet saved); the same for the stage graphs where the
    bundle has them.  An engine that breaks tolerance is not kept (a
    previous one stays), and MDHRError says why."""

    quiet_polygraphy()
    bundle = Bundle(Path(folder), card)
    source = engine_source(bundle, precision)
    serialized, seconds = build_engine(source, Path(folder) / TIMING_CACHE_FILE)
    # Staged beside the target: a rejected build leaves a previous engine as it was.
    with atomic_path(Path(folder) / ENGINE_FILE) as staged:
        staged.write_bytes(serialized)
        report, reference = engine_parity(bundle, staged, precision)
        refuse_unless_passed(report, precision, folder, "the TensorRT engine")
    built = EngineBuild.from_json(engine_build_facts(source, precision, seconds))
    card = seal(folder, replace(card, engine_build=built).with_checks(tensorrt=report), {"engine": ENGINE_FILE})
    if has_stages(bundle, precision):
        stages = build_stage_engines(Path(folder), card, precision, reference)
        card = seal(folder, card.with_checks(tensorrt_stages=stages.report), stages.files)
    return card


def engine_build_facts(source: Path, precision: str, seconds: float) -> dict:
    import tensorrt as trt

    gpu = visible_gpu()
    return {"tensorrt": trt.__version__, "gpu": gpu.name, "compute_capability": gpu.compute_capability,
            "cuda_driver": gpu.driver, "cuda_runtime": gpu.runtime, "onnx": source.name,
            "precision": precision, "strongly_typed": True, "build_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def refuse_unless_passed(report: dict, precision: str, folder: Path, engines: str) -> None:
    """``engines``: "the engine" or "the stage engines", for the message."""
    if not report["passed"]:
        raise MDHRError(f"{engines} ({precision}) failed the parity gate against the fp32 ONNX ("
                        + "; ".join(report["failures"]) + "); not kept"
                        + ("" if precision == "fp32" else f"; fp32 engines: mdhr-build {folder} --fp32"))


def build_stage_engines(folder: Path, card: Card, precision: str, reference: dict) -> Written[None]:
    """Engines of the frame and clip stages (streaming and centred windows
    on the GPU), from the stage ONNX of ``precision``; kept, both or
    neither, when the stages run as the official windows agree with the
    fp32 ONNX ``reference`` as ``model.engine`` must."""
    bundle = Bundle(folder, card)
    with contextlib.ExitStack() as stack:
        staged = {}
        for kind, onnx_kind in zip(STAGE_ENGINE_KINDS, STAGE_KINDS[precision]):
            serialized, _ = build_engine(bundle.verified(onnx_kind), folder / TIMING_CACHE_FILE)
            staged[kind] = stack.enter_context(atomic_path(folder / STAGE_ENGINE_FILES[kind]))
            staged[kind].write_bytes(serialized)
        trial = Bundle(folder, seal(folder, card, {k: p.name for k, p in staged.items()}))
        runner = StageRunner(trial, precision, engines=True)
        try:
            candidate = parity.concat(official_windows(runner, parity.parity_clips(trial.batch, trial.frames)))
        finally:
            runner.close()
        report = judge(reference, candidate, trial, precision)
        refuse_unless_passed(report, precision, folder, "the TensorRT engines of the frame and clip stages")
    return Written(None, STAGE_ENGINE_FILES, report)


def build_bundle_engine(bundle_dir: Path, precision: str) -> Card:
    # the bundle, its ONNX and the files the build writes, before anything about TensorRT
    bundle = load_bundle(bundle_dir)
    engine_source(bundle, precision)
    for name in (ENGINE_FILE, TIMING_CACHE_FILE, *STAGE_ENGINE_FILES.values()):
        check_output_file(bundle.root / name, "BUNDLE")
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise MDHRError(f"cannot build a TensorRT engine here: {reason}; run mdhr-build on the target GPU machine")
    return write_card(bundle.root, build_into(bundle.root, bundle.card, precision))
