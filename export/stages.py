"""The frame and clip stage graphs (``mdhr/stages.py``) in a bundle: static
ONNX exports beside ``model.onnx``, checked against PyTorch like it, and
their FP16 versions; each precision's graphs share one weights file with
the model's (``weights.py``)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

from mdhr.errors import MDHRError
from mdhr.model import MDHR
from mdhr.stages import (
    MOTION_CHANNELS,
    ClipCentre,
    ClipStage,
    FrameRun,
    FrameStage,
    cached_floats_per_frame,
    centre,
    centre_reach,
    tap_shapes,
)
from mdhr_export import fp16 as fp16_tools
from mdhr_export import graph, isolated, parity
from mdhr_export.staging import Written
from mdhr_export.weights import WeightsFile
from mdhr_runtime.backends import stages as runtime_stages
from mdhr_runtime.bundle import Bundle, seal
from mdhr_runtime.card import Card, FrameBatch, Stages
from mdhr_runtime.card import ClipCentre as CentreAccount

STAGES = ("frame_stage", "clip_stage")
FILES = {"frame_stage": "frame_stage.onnx", "clip_stage": "clip_stage.onnx", "frame_batch": "frame_batch.onnx",
         "clip_centre": "clip_centre.onnx",
         "frame_stage_fp16": "frame_stage_fp16.onnx", "clip_stage_fp16": "clip_stage_fp16.onnx"}


class ClipStageOutputs(nn.Module):
    """The clip stage's outputs regrouped like ``model.onnx``'s: ``au_scores``
    [1, T, N] first, then each region's logits [1, T, k]."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.stage = ClipStage(model)

    def forward(self, static: torch.Tensor, dynamics: torch.Tensor):
        B, T = static.shape[:2]
        *regions, au = self.stage(static, dynamics)
        return tuple(o.unflatten(0, (B, T)) for o in (au, *regions))


class ClipCentreOutputs(nn.Module):
    """The centre-only clip stage's outputs (``mdhr.stages.ClipCentre``) in
    the clip stage's order and layout: each ``[1, 1, n]``, the centre frame's."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.stage = ClipCentre(model)

    def forward(self, static: torch.Tensor, dynamics: torch.Tensor):
        *regions, au = self.stage(static, dynamics)
        return tuple(o.unsqueeze(1) for o in (au, *regions))


def frame_batch_size(frames: int) -> int:
    """Frames per call of ``frame_batch``: the default hop (T/2), the frames
    a centred window's hop brings in."""
    return max(frames // 2, 1)


def export_stage_graph(model: MDHR, kind: str, frames: int, opset: int, chatty: bool = False) -> onnx.ModelProto:
    """One stage as a static graph: one frame per frame stage call, one
    window of ``frames`` per clip stage call, ``frame_batch_size`` frames
    per ``frame_batch`` call."""
    if kind == "frame_batch":
        previous = tuple(torch.zeros(1, *shape) for shape in tap_shapes(model))
        return graph.export_module(
            FrameRun(model).eval(), (torch.zeros(frame_batch_size(frames), 3, 224, 224), *previous), opset, chatty,
            [runtime_stages.FRAME_INPUT, *runtime_stages.PREVIOUS_TAPS],
            [runtime_stages.STATIC, runtime_stages.DYNAMICS, *runtime_stages.TAPS])
    if kind == "frame_stage":
        previous = tuple(torch.zeros(1, *shape) for shape in tap_shapes(model))
        return graph.export_module(
            FrameStage(model).eval(), (torch.zeros(1, 3, 224, 224), *previous), opset, chatty,
            [runtime_stages.FRAME_INPUT, *runtime_stages.PREVIOUS_TAPS],
            [runtime_stages.STATIC, runtime_stages.DYNAMICS, *runtime_stages.TAPS])
    example = (torch.zeros(1, frames, 49, 512), torch.zeros(1, frames - 1, 4, MOTION_CHANNELS, 7, 7))
    module = ClipCentreOutputs(model) if kind == "clip_centre" else ClipStageOutputs(model)
    return graph.export_module(module.eval(), example, opset, chatty,
                               [runtime_stages.STATIC, runtime_stages.DYNAMICS], graph.output_names(model))


def export_stage(recipe: isolated.ModelRecipe, kind: str, frames: int, opset: int, chatty: bool, raw: Path) -> list[str]:
    """One stage graph (a kind of ``FILES``, fp32) checked to ``raw``,
    in a process of its own (``isolated.run_isolated``); returns its
    precision-sensitive nodes."""
    proto = graph.check(export_stage_graph(recipe.build(), kind, frames, opset, chatty))
    return isolated.save(proto, raw)


def describe(model: MDHR, frames: int) -> dict:
    """The card's account of the stages."""
    return {
        "cut": "before the temporal average of the dynamic features; the frame stage passes on each pair's "
               "motion as the bias-free images of the two 1x1 convolutions after the average",
        "frame_stage": {"inputs": {"frame": [1, 3, 224, 224],
                                   **{name: [1, *shape] for name, shape in
                                      zip(runtime_stages.PREVIOUS_TAPS, tap_shapes(model))}},
                        "outputs": {"static": [1, 49, 512], "dynamics": [1, 4, MOTION_CHANNELS, 7, 7],
                                    **{name: [1, *shape] for name, shape in
                                       zip(runtime_stages.TAPS, tap_shapes(model))}}},
        "clip_stage": {"inputs": {"static": [1, frames, 49, 512], "dynamics": [1, frames - 1, 4, MOTION_CHANNELS, 7, 7]},
                       "outputs": graph.output_names(model)},
        "cached_bytes_per_frame": cached_floats_per_frame(model) * 4,
    }


def write_stages(recipe: isolated.ModelRecipe, model: MDHR, frames: int, opset: int, staging: Path, card: Card,
                 clips, reference, weights: WeightsFile, faster_graphs: bool = True,
                 chatty: bool = False) -> Written[Stages]:
    """Export both stages into ``staging`` (each in a process of its own,
    see ``isolated.py``; their weights in ``weights``, updated): the card's
    account of them, their files, and the parity report of the stages over
    the parity clips against PyTorch's ``reference``.  Raises (no bundle)
    when the split is not faithful.  ``faster_graphs``: also the CPU's
    faster forms of the stages (``frame_batch``, ``clip_centre``), where
    they give the same bits."""
    sensitive = {kind: _export_simplified(recipe, kind, frames, opset, staging, card, weights, chatty)
                 for kind in STAGES}
    files = {kind: FILES[kind] for kind in STAGES}
    stages = Stages.from_json({**describe(model, frames), "frame_differences": sensitive["frame_stage"]}, card.outputs)
    trial = seal(staging, replace(card, stages=stages), files)
    outputs, windows = stage_run(staging, trial, clips, "fp32")
    report = parity.compare(reference, outputs, card.threshold)
    problems = parity.fp32_failures(report)
    if problems:
        raise MDHRError("the exported frame and clip stages disagree with PyTorch: " + "; ".join(problems)
                        + "; no bundle written (please report this with the checkpoint's configuration)")
    if not faster_graphs:
        return Written(stages, files, report)
    if frame_batch_size(frames) > 1:
        batch = write_frame_batch(recipe, frames, opset, staging, trial, clips, weights, chatty)
        stages, files = replace(stages, frame_batch=batch.section), {**files, **batch.files}
    if centre_reach(frames) != (0, frames):  # else the centre reads the whole window: the clip stage's work
        centred = write_clip_centre(recipe, frames, opset, staging, trial, windows, weights, chatty)
        stages, files = replace(stages, clip_centre=centred.section), {**files, **centred.files}
    return Written(stages, files, report)


def write_frame_batch(recipe: isolated.ModelRecipe, frames: int, opset: int, staging: Path, card: Card, clips,
                      weights: WeightsFile, chatty: bool = False) -> Written[FrameBatch]:
    """The frame stage over a hop of frames per call (``FrameRun``), kept
    only where ONNX Runtime gives every frame's outputs bit for bit as the
    one-frame graph does on the parity clips (rows must not depend on how
    frames were grouped); the card says which, and how many times faster it
    took a hop than one frame per call here (``stages.frame_batch``: the
    runtime uses it only where it was faster)."""
    _export_simplified(recipe, "frame_batch", frames, opset, staging, card, weights, chatty)
    kept = {"frame_batch": FILES["frame_batch"]}
    # The card as the runtime would read it were the graph kept (a card names
    # frame_batch only when it is bit-identical): the check runs it so.
    described = FrameBatch(frame_batch_size(frames), True)
    differing, speedup = batch_check(staging, seal(staging, replace(card, stages=replace(
        card.stages, frame_batch=described)), kept), clips)
    described = replace(described, bit_identical=not differing, differing_outputs=tuple(differing),
                        speedup=round(speedup, 3))
    if differing:  # one frame per call stays the only way; its weights are the other graphs' (shared file)
        (staging / FILES["frame_batch"]).unlink()
        return Written(described)
    return Written(described, kept)


def write_clip_centre(recipe: isolated.ModelRecipe, frames: int, opset: int, staging: Path, card: Card, windows,
                      weights: WeightsFile, chatty: bool = False) -> Written[CentreAccount]:
    """The clip stage for the window's centre frame alone (``ClipCentre``:
    what a centred window of hop 1 scores), kept only where ONNX Runtime
    gives every output there bit for bit as the clip stage does on
    ``windows`` (the parity clips' frame features); the card says which,
    and how many times faster a call was (``stages.clip_centre``)."""
    kept = {"clip_centre": FILES["clip_centre"]}
    _export_simplified(recipe, "clip_centre", frames, opset, staging, card, weights, chatty)
    described = CentreAccount(centre(frames), True)
    trial = seal(staging, replace(card, stages=replace(card.stages, clip_centre=described)), kept)
    runner = runtime_stages.StageRunner(Bundle(staging, trial), "fp32", providers=["CPUExecutionProvider"])
    try:
        differing = runtime_stages.centre_differences(runner, windows)
        faster = runtime_stages.centre_speedup(runner, windows[0])
    finally:
        runner.close()
    described = replace(described, bit_identical=not differing, differing_outputs=tuple(differing),
                        speedup=round(faster, 3))
    if differing:  # the clip stage stays the only way
        (staging / FILES["clip_centre"]).unlink()
        return Written(described)
    return Written(described, kept)


def _export_simplified(recipe: isolated.ModelRecipe, kind: str, frames: int, opset: int, staging: Path, card: Card,
                       weights: WeightsFile, chatty: bool) -> list[str]:
    """Export one stage graph and simplify it into ``staging`` (each in a
    process of its own; its weights into ``weights``, updated): its
    precision-sensitive nodes."""
    raw = staging / f".unsimplified-{FILES[kind]}"
    try:
        sensitive = isolated.run_isolated(export_stage, recipe, kind, frames, opset, chatty, raw)
        metadata = {"stage": kind, "dataset": card.dataset, "backbone": card.backbone}
        weights.stored = isolated.run_isolated(isolated.simplify, raw, staging / FILES[kind], metadata, weights).stored
    finally:
        raw.unlink(missing_ok=True)
    return sensitive


def batch_check(staging: Path, card: Card, clips) -> tuple[list[str], float]:
    """The outputs (static, dynamics, taps) in which ``frame_batch`` and the
    frame stage one frame per call differ in any bit on the parity clips,
    and how many times faster ``frame_batch`` takes a hop (``card``: sealed,
    naming ``frame_batch``)."""
    runner = runtime_stages.StageRunner(Bundle(staging, card), "fp32", providers=["CPUExecutionProvider"])
    try:
        crops = [crop for batch in clips for clip in batch for crop in clip]
        return runtime_stages.batch_differences(runner, crops), runtime_stages.batch_speedup(runner, crops)
    finally:
        runner.close()


def write_fp16_stages(staging: Path, card: Card, clips, reference, weights: WeightsFile) -> Written[Stages]:
    """FP16 versions (their weights in ``weights``, updated; float32 where
    ``fp16.FP16_FP32_PARTS`` says), measured against the fp32 ONNX outputs
    ``reference``: the stages' account with the nodes kept float32, the files."""
    kept = fp16_tools.kept_nodes({"frame_differences": card.stages.frame_differences})
    keep = {"frame_stage": kept, "clip_stage": []}
    files = {}
    for kind in STAGES:
        weights.stored = isolated.run_isolated(isolated.to_fp16, staging / FILES[kind], keep[kind],
                                               staging / FILES[f"{kind}_fp16"], weights).stored
        files[f"{kind}_fp16"] = FILES[f"{kind}_fp16"]
    stages = replace(card.stages, fp32_nodes=tuple(kept))
    trial = seal(staging, replace(card, stages=stages), files)
    return Written(stages, files, {"reference": "onnxruntime-fp32-cpu", "method": fp16_tools.CPU_EMULATION,
                                   **parity.compare(reference, stage_outputs(staging, trial, clips, "fp16"),
                                                    card.threshold)})


def stage_outputs(staging: Path, card: Card, clips: list[np.ndarray], precision: str) -> dict[str, np.ndarray]:
    """Every clip of ``clips`` ([B, T, ...] batches) through the stages in
    ONNX Runtime CPU, as the official windows: outputs like ``model.onnx``'s
    (``card``: sealed, naming the stage graphs)."""
    return stage_run(staging, card, clips, precision)[0]


def stage_run(staging: Path, card: Card, clips: list[np.ndarray], precision: str):
    """``stage_outputs``, and the windows of frame features they were computed from."""
    runner = runtime_stages.StageRunner(Bundle(staging, card), precision, providers=["CPUExecutionProvider"])
    try:
        windows = runtime_stages.clip_windows(runner, clips)
        return parity.concat(runtime_stages.window_outputs(runner, windows)), windows
    finally:
        runner.close()
