"""mdhr-parity: how faithfully each backend reproduces a reference on the
same clips, and (with a labelled set) how well each scores against ground
truth.

The reference is PyTorch float32 when a checkpoint is given, else the fp32
ONNX on ONNX Runtime's CPU provider.  Errors, agreement at the threshold and
region argmax agreement come from ``mdhr_export.parity.compare`` (the judge
used at export time); ``metrics`` adds what a fixed 0.5 threshold cannot
show on an untrained model, whose scores all sit below 0.5: agreement at
each AU's median reference score and rank correlation.

Inputs are read in model batches, once per backend (decoding, tracking and
cropping are deterministic, so every backend sees the same clips), so a
long video or a big labelled set never has to fit in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from mdhr.aus import CLIP_FRAMES
from mdhr.errors import BackendUnavailable, InputError, MDHRError, param
from mdhr_bench import backends, metrics
from mdhr_bench.backends import Backend
from mdhr_bench.bench import bundle_summary, checkpoint_summary
from mdhr_bench.labelled import LabelledSet
from mdhr_bench.machine import describe, usable_cores
from mdhr_bench.video import video_clip_batches
from mdhr_export.parity import (
    FP32_AU_TOLERANCE,
    REDUCED_PRECISION_MIN_AGREEMENT,
    agreement,
    concat,
    fp32_failures,
    parity_clips,
    reduced_precision_failures,
)
from mdhr_runtime.backends.runners import Runner
from mdhr_runtime.bundle import Bundle, load_bundle

if TYPE_CHECKING:
    from mdhr_bench.labelled import LabelledSet

RESULT_KEYS = ("backend", "precision", "device", "status", "reason", "passed", "failures", "frames",
               "au_max_abs_error", "au_mean_abs_error", "au_decision_agreement", "median_decision_agreement",
               "median_decision_agreement_per_au", "region_argmax_agreement", "regions", "rank_correlation_min",
               "rank_correlation_per_au", "f1_vs_reference_per_au", "ground_truth")


@dataclass
class ParityOptions:
    model: Path
    ckpt: Path | None = None
    video: Path | None = None
    backends: list[Backend] | None = None  # None: every backend but the reference
    image_list: Path | None = None
    label_list: Path | None = None
    image_root: Path | None = None
    fp32_tolerance: float = FP32_AU_TOLERANCE
    min_agreement: float = REDUCED_PRECISION_MIN_AGREEMENT
    max_clips: int | None = None  # per video
    threads: int | None = None


@dataclass
class Inputs:
    """Where the clips come from, and the labels of the labelled part."""

    sources: list[tuple[str, Callable[[], Iterator[tuple[np.ndarray, int]]]]] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    labelled: LabelledSet | None = None


def validate(options: ParityOptions) -> None:
    if (options.image_list is None) != (options.label_list is None):
        raise InputError(f"a labelled set needs both {param('image_list')} and {param('label_list')}")
    if options.ckpt is not None and not Path(options.ckpt).is_file():
        raise InputError(f"{options.ckpt}: no such checkpoint file; check {param('ckpt')}")
    if options.video is not None and not Path(options.video).exists():
        raise InputError(f"{options.video}: no such video; check {param('video')}")
    if not 0 <= options.min_agreement <= 1:
        raise InputError(f"{param('min_agreement')} must be between 0 and 1, got {options.min_agreement}")
    if options.max_clips is not None and options.max_clips < 1:
        raise InputError(f"{param('max_clips')} must be 1 or more, got {options.max_clips}")


def run_parity(options: ParityOptions, say: Callable[[str], None] = lambda line: None) -> dict:
    validate(options)
    bundle = load_bundle(options.model)
    threads = options.threads or usable_cores()
    reference = backends.TORCH_FP32 if options.ckpt is not None else backends.ONNXRUNTIME_FP32
    inputs = gather_inputs(options, bundle, say)
    machine = describe(threads)
    try:
        reference_runner = backends.open_backend(reference, bundle, options.ckpt, threads)
    except BackendUnavailable as e:
        raise MDHRError(f"the reference ({reference.name}) cannot run: {e}") from None
    ref_outputs, ref_device = run_through(reference, reference_runner, inputs, say)
    labels = inputs.labelled.labels() if inputs.labelled is not None else None
    results = [check_backend(backend, reference, ref_outputs, bundle, inputs, labels, options, threads, say)
               for backend in (backends.for_bundle(b, bundle) for b in candidates(options.backends, reference))]
    report = {
        "tool": "mdhr-parity",
        "bundle": {**bundle_summary(bundle), "au_names": bundle.au_names, "threshold": bundle.threshold},
        "checkpoint": checkpoint_summary(options.ckpt, bundle),
        "machine": machine,
        "reference": {"backend": reference.name, "precision": reference.precision, "device": ref_device,
                      "why": "a checkpoint was given" if options.ckpt else "no checkpoint: the fp32 ONNX on CPU",
                      "ground_truth": ground_truth(ref_outputs, labels, bundle)},
        "inputs": {"clips": int(ref_outputs["au_scores"].shape[0]),
                   "frames": int(np.prod(ref_outputs["au_scores"].shape[:2])),
                   "clip_frames": bundle.frames, "description": "; ".join(inputs.description)},
        "tolerances": {"fp32_au_max_abs_error": options.fp32_tolerance, "fp32_region_argmax_agreement": 1.0,
                       "reduced_precision_min_agreement": options.min_agreement},
        "results": results,
        "ground_truth": None,
        "passed": all(r["passed"] is not False for r in results),
    }
    if labels is not None:
        report["ground_truth"] = {
            "clips": len(labels), "clip_frames": bundle.frames,
            "labelled_frames": report["reference"]["ground_truth"]["labelled_frames"],
            "clip_construction": f"official (CVI-SZU/MDHR val loaders) with T={bundle.frames}, the bundle's "
                                 f"clip length; the official T is {CLIP_FRAMES}"}
    return report


def check_backend(backend: Backend, reference: Backend, ref_outputs: dict, bundle: Bundle, inputs: Inputs,
                  labels: np.ndarray | None, options: ParityOptions, threads: int,
                  say: Callable[[str], None]) -> dict:
    """One backend's row: run it on the inputs and judge it, or say why not."""
    if backend.name == reference.name:
        return skipped(backend, "is the reference")
    try:
        # On a CPU-only machine the FP16 ONNX still says something about
        # accuracy (its rounding), though nothing about speed.
        runner = backends.open_backend(backend, bundle, options.ckpt, threads, cpu_fp16_estimate=True)
    except BackendUnavailable as e:
        say(f"{backend.name}: skipped ({e})")
        return skipped(backend, str(e))
    outputs, device = run_through(backend, runner, inputs, say)
    return judge(backend, device, ref_outputs, outputs, bundle, labels, options)


def candidates(chosen: list[Backend] | None, reference: Backend) -> list[Backend]:
    if chosen is not None:
        return chosen
    return [b for b in backends.BACKENDS.values() if b.name != reference.name]


def skipped(backend: Backend, reason: str) -> dict:
    row = dict.fromkeys(RESULT_KEYS)
    row.update(backend=backend.name, precision=backend.precision, status="skipped", reason=reason)
    return row


def gather_inputs(options: ParityOptions, bundle: Bundle, say: Callable[[str], None] = lambda line: None) -> Inputs:
    """Real face clips when a video or a labelled set is given (random inputs
    do not exercise the temporal branch the way near-identical consecutive
    frames do); the export's synthetic parity clips otherwise."""
    inputs = Inputs()
    if options.video is not None:

        warned = set()  # every backend reads the video again: warn once

        def warn_once(line: str) -> None:
            if line not in warned:
                warned.add(line)
                say(line)

        inputs.sources.append(("video", lambda: video_clip_batches(options.video, bundle, options.max_clips,
                                                                   warn_once)))
        inputs.description.append(f"face clips of {options.video}")
    if options.image_list is not None:

        labelled = LabelledSet(options.image_list, options.label_list, options.image_root, bundle.dataset,
                               len(bundle.au_names), bundle.frames)
        inputs.labelled = labelled
        # last, so its outputs are the tail of every backend's outputs
        inputs.sources.append(("labelled", lambda: labelled.batches(bundle.batch)))
        inputs.description.append(f"labelled set {options.image_list} ({len(labelled.clips)} clips)")
    if not inputs.sources:
        inputs.sources.append(("synthetic", lambda: ((c, c.shape[0]) for c in synthetic_clips(bundle))))
        inputs.description.append("synthetic clips (white noise and smooth drifting images), as no "
                                  "video of real faces was given")
    return inputs


def synthetic_clips(bundle: Bundle) -> list[np.ndarray]:
    return parity_clips(bundle.batch, bundle.frames)


def run_through(backend: Backend, runner: Runner, inputs: Inputs, say: Callable[[str], None]) -> tuple[dict, str]:
    """One runner over every input batch, then closed; padding clips' outputs
    dropped.  Backends run one after another, not interleaved batch by batch:
    ONNX Runtime's and PyTorch's thread pools keep spinning after a call, and
    interleaved they slow each other down several times over."""
    collected, clips = [], 0
    try:
        for _kind, batches in inputs.sources:
            for batch, real in batches():
                collected.append({k: v[:real] for k, v in runner.infer(batch).items()})
                clips += real
        device = backends.device_of(runner)
    finally:
        runner.close()
    if clips == 0:
        raise MDHRError("no clip to compare on: no face was found in the video" if inputs.sources[0][0] == "video"
                        else "no clip to compare on")
    say(f"{backend.name}: {clips} clips run")
    return concat(collected), device


def judge(backend: Backend, device: str, reference: dict, candidate: dict, bundle: Bundle,
          labels: np.ndarray | None, options: ParityOptions) -> dict:
    report = agreement(reference, candidate, bundle.threshold, bundle.au_names)
    row = dict.fromkeys(RESULT_KEYS)
    row.update({k: v for k, v in report.items() if k in RESULT_KEYS})
    row.update(
        backend=backend.name, precision=backend.precision, device=device, status="ok",
        f1_vs_reference_per_au=metrics.f1_against_reference(reference["au_scores"], candidate["au_scores"],
                                                            bundle.threshold, bundle.au_names),
        ground_truth=ground_truth(candidate, labels, bundle),
    )
    row["failures"] = (reduced_precision_failures(report, options.min_agreement, min_rank=None)
                       if backend.reduced_precision else fp32_failures(report, options.fp32_tolerance))
    row["passed"] = not row["failures"]
    return row


def ground_truth(outputs: dict, labels: np.ndarray | None, bundle: Bundle) -> dict | None:
    """F1 against the labels; the labelled clips are the last outputs."""
    if labels is None:
        return None
    scores = outputs["au_scores"][-len(labels):]
    return metrics.ground_truth_f1(scores, labels, bundle.threshold, bundle.au_names)
