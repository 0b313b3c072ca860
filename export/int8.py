"""Reduced precision for the CPU, at export: the INT8 model (OpenVINO IR,
static per-channel weights and per-tensor activations, calibrated by NNCF on
real face clips, with the float32 layer groups found by ``int8_search``),
where the CPU has bf16 the groups bf16 keeps float32 (``bf16_search``),
and the agreement gates of every reduced-precision CPU
runner, measured against the fp32 ONNX on real face clips and written to
the card (read by ``mdhr_runtime.backends.gates``).

The calibration footage is split clip by clip: even clips calibrate, odd
clips judge, so the gate never scores INT8 on the clips it was fitted to
(one clip does both).
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from mdhr.errors import BackendUnavailable, InputError, param
from mdhr_export import parity
from mdhr_export.int8_search import Search, SearchSettings
from mdhr_export.staging import Written
from mdhr_runtime.backends.gates import gate_text
from mdhr_runtime.backends.openvino_runner import OpenVINORunner, openvino_unavailable_reason
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.batch.corpus import VIDEO_SUFFIXES
from mdhr_runtime.bundle import Bundle, write_card
from mdhr_runtime.card import Card, PrecisionChoice
from mdhr_runtime.pipeline import clip_batches

INT8_FILE, INT8_WEIGHTS = "model_int8.xml", "model_int8.bin"
INSTALL = "pip install -e '.[export,int8]'"


def check_tools(int8: bool) -> None:
    """Before any work: OpenVINO (and NNCF for --int8) are importable."""
    missing = [name for name in (("openvino", "nncf") if int8 else ("openvino",)) if not _importable(name)]
    if missing:
        raise BackendUnavailable(f"{' and '.join(missing)} not installed: {param('int8')} and {param('calibrate')} need "
                                 f"them ({INSTALL})")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def footage_files(path: Path) -> list[Path]:
    """The sources of face clips: a video, a folder of frames (one video's),
    or a folder holding videos (each used)."""
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        return videos or [path]
    return [path]


def face_clips(path: Path, bundle: Bundle) -> list[np.ndarray]:
    """Every window of the footage in which a face was found, each as one
    clip [T, 3, 224, 224] (windows without a face hold filler, not a face)."""

    clips = []
    for source in footage_files(path):
        for batch in clip_batches(source, bundle.input_shape):
            clips += [clip for clip, face in zip(batch.clips, batch.has_face.any(axis=1)) if face]
    if not clips:
        raise InputError(f"{param('calibrate')} {path}: no face found in its frames; give footage of faces (a video, a "
                         "folder of frames or a folder of videos)")
    return clips


def batched(clips: list[np.ndarray], batch: int) -> list[tuple[np.ndarray, int]]:
    """Clips in model batches (the last padded by repeating its last clip),
    each with its number of real clips."""
    out = []
    for start in range(0, len(clips), batch):
        chunk = clips[start:start + batch]
        out.append((np.stack(chunk + chunk[-1:] * (batch - len(chunk))), len(chunk)))
    return out


def outputs_on(runner, batches: list[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    try:
        return parity.concat([{k: v[:real] for k, v in runner.infer(b).items()} for b, real in batches])
    finally:
        runner.close()


def quantize(staging: Path, card: Card, calibration: list[tuple[np.ndarray, int]],
             judged: list[tuple[np.ndarray, int]], reference: dict[str, np.ndarray], settings: SearchSettings,
             say: Callable[[str], None]) -> Written[PrecisionChoice]:
    """Search the layer groups to keep float32 (``int8_search``) and write
    the chosen INT8 IR beside the fp32 ONNX; the card's ``int8`` section
    says how it was made."""
    import nncf
    import openvino as ov

    search = Search(staging, Bundle(staging, card), calibration, judged, reference, settings, say)
    try:
        record = search.run()
        chosen = record["frontier"][record["chosen"]]
        source = search.folder / chosen["file"]
        os.replace(source.with_suffix(".bin"), staging / INT8_WEIGHTS)
        os.replace(source, staging / INT8_FILE)
        for candidate in record["frontier"]:  # the other candidates' files go with the search's folder
            del candidate["file"]
    finally:
        search.close()
    verdict = "passes" if chosen["passed"] else "FAILS (the best found is kept)"
    tried = len(record["frontier"])
    say(f"int8: {tried} candidate{'s' if tried != 1 else ''} calibrated on {sum(r for _, r in calibration)} face clips; "
        f"chosen: {', '.join(chosen['fp32_groups']) or 'nothing'} kept float32, "
        f"{chosen['speedup_vs_onnxruntime']:.2f}x fp32; it {verdict} the gate")
    kept = {g["name"]: g["nodes"] for g in record["groups"]}
    return Written(PrecisionChoice.from_json({
        "tool": f"nncf {nncf.__version__}, openvino {ov.__version__}", "format": "OpenVINO IR",
        "weights": "int8, symmetric, per output channel", "activations": "int8, per tensor",
        "calibration_clips": int(sum(r for _, r in calibration)), "kept_fp32": chosen["fp32_groups"],
        "kept_fp32_nodes": sum(kept[g] for g in chosen["fp32_groups"]),
        "speedup_vs_onnxruntime_at_export": chosen["speedup_vs_onnxruntime"], "search": record}, "int8"),
        {"openvino_int8": INT8_FILE, "openvino_int8_weights": INT8_WEIGHTS})


def measure_gates(staging: Path, card: Card, judged: list[tuple[np.ndarray, int]], reference: dict[str, np.ndarray],
                  source: str, settings: SearchSettings, say: Callable[[str], None]) -> dict:
    """Each reduced-precision CPU runner (and OpenVINO fp32) against the fp32
    ONNX on ONNX Runtime (``reference``), on the judged face clips: the
    card's ``parity.reduced_precision``."""
    bundle = Bundle(staging, card)
    runners = {}
    for backend in ("openvino", "openvino-bf16", "int8"):
        reason = openvino_unavailable_reason(backend, bundle)
        if reason is not None:
            runners[backend] = {"status": "skipped", "reason": reason, "passed": False}
            say(f"gate {backend}: not measured ({reason})")
            continue
        report = parity.judged(reference, outputs_on(OpenVINORunner(bundle, backend), judged),
                               bundle.threshold, bundle.au_names, fp32=backend == "openvino",
                               min_agreement=settings.min_agreement, min_rank=settings.min_rank)
        entry = {"int8": "int8", "openvino-bf16": "bf16"}.get(backend)
        choice = {"int8": card.int8, "bf16": card.bf16}.get(entry)
        if choice is not None and choice.search_passed is False:  # the best found ships, marked failing
            report["failures"].append(f"no {entry.upper()} candidate passed the gate at >= {settings.min_speedup:g}x "
                                      f"ONNX Runtime fp32 (the search's frontier: card {entry}.search)")
            report["passed"] = False
        runners[backend] = {"status": "measured", "clips": int(sum(r for _, r in judged)), **report}
        say(f"gate {backend}: " + ("passed" if report["passed"] else "failed: " + "; ".join(report["failures"])))
    return {"reference": "onnxruntime-fp32-cpu", "gate": gate_text(settings.min_agreement, settings.min_rank),
            "source": source, "runners": runners}


def reduced_precision_step(staging: Path, card: Card, footage: Path, int8: bool, say: Callable[[str], None],
                           settings: SearchSettings = SearchSettings()) -> Card:
    """Face clips of ``footage`` -> the INT8 model (with ``int8``), the bf16
    choice (where the CPU has bf16) and every gate: ``card`` (sealed) with
    them, saved."""
    clips = face_clips(footage, Bundle(staging, card))
    calibrate, judge = (clips[0::2], clips[1::2]) if len(clips) > 1 else (clips, clips)
    batch = card.input.batch
    judged = batched(judge if int8 else clips, batch)
    # the fp32 ONNX's outputs on the judging clips, computed once for the searches and the gates
    reference = outputs_on(OnnxRuntimeRunner(Bundle(staging, card), "fp32", providers=["CPUExecutionProvider"]), judged)
    if int8:
        quantized = quantize(staging, card, batched(calibrate, batch), judged, reference, settings, say)
        card = write_card(staging, replace(card, int8=quantized.section), quantized.files)
    if openvino_unavailable_reason("openvino-bf16", Bundle(staging, card)) is None:
        from mdhr_export.bf16_search import search_bf16

        card = write_card(staging, replace(card, bf16=search_bf16(Bundle(staging, card), judged, reference, settings,
                                                                  say)))
    split = "odd clips (even clips calibrated the INT8 model)" if len(clips) > 1 and int8 else "all clips"
    gates = measure_gates(staging, card, judged, reference, f"{split} of the face clips of {footage}", settings, say)
    return write_card(staging, card.with_checks(reduced_precision=gates))
