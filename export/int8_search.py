"""Which layer groups the INT8 model keeps float32, chosen by measurement.

Per-group sensitivity, then a greedy frontier:

1. each layer group (``mdhr_runtime.backends.layer_groups``) alone in INT8, the rest float32:
   its agreement with fp32 on the judging clips says how much quantising
   it costs;
2. the groups that passed alone, in INT8 cumulatively, least costly first:
   2, 3, ... while the last one passed the agreement gate (a model with one
   more group in INT8 than a failing one fails too, so a group that fails
   alone joins no candidate).

NNCF calibrates once, every searched group in INT8; each candidate is that
model with the quantisation taken out of its float32 groups
(``int8_candidates``: the same model as its own NNCF run with those groups
in the ignored scope).  A candidate is judged against the fp32 ONNX on ONNX
Runtime clip by clip, and judging stops as soon as its disagreements
already exceed what the gate allows over all the judging clips (the entry
says on how many clips it was judged).  Only then is a candidate timed
against fp32 in alternating runs on the same clip (load changes hit both
alike): one that fails agreement is timed only if none passes and the
fallback below needs its speed.  The shipped model is the fastest candidate
that passes the gate at ``min_speedup`` or more; when none does, the most
faithful one that reaches ``min_speedup`` (else the fastest), marked
failing.  All candidates, with agreement and (where timed) speed, are the
frontier in the card.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mdhr.errors import MDHRError
from mdhr_export import parity
from mdhr_export.int8_candidates import quantize_once, with_float32_nodes
from mdhr_runtime.backends.layer_groups import LayerGroup, islands_of, layer_groups
from mdhr_runtime.backends.openvino_runner import compile_config
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.timing import speedup

# The bar: below this speed-up an INT8 model is not worth its agreement loss.
MIN_SPEEDUP = 1.2
CANDIDATES_DIR = ".int8_candidates"


@dataclass(frozen=True)
class SearchSettings:
    min_agreement: float = parity.REDUCED_PRECISION_MIN_AGREEMENT
    min_rank: float = parity.REDUCED_PRECISION_MIN_RANK_CORRELATION
    min_speedup: float = MIN_SPEEDUP
    timing_rounds: int = 3  # alternating fp32 / candidate runs per candidate
    groups: tuple[str, ...] | None = None  # the groups the search may quantise (None: all); the rest stay float32

    def gate(self) -> dict:
        return {"min_agreement": self.min_agreement, "min_rank_correlation": self.min_rank,
                "min_speedup_vs_onnxruntime_fp32": self.min_speedup}


def score(report: dict) -> float:
    """One number per candidate, the gate's weakest measure: higher is more
    faithful, and the gate passes when it reaches the gate's minimum."""
    rank = report["rank_correlation_min"]
    return min(report["median_decision_agreement"], report["au_decision_agreement"],
               report["region_argmax_agreement"], 1.0 if rank is None else rank)


class Search:
    """The search on one staged bundle: calibration and judging clips in
    model batches, ``reference`` the fp32 ONNX's outputs on the judging clips."""

    def __init__(self, staging: Path, bundle, calibration, judged, reference: dict[str, np.ndarray],
                 settings: SearchSettings, say: Callable[[str], None]):
        import nncf
        import openvino as ov

        nncf.set_log_level(logging.WARNING)  # not a line per node left in float32
        self.staging, self.bundle, self.settings, self.say = staging, bundle, settings, say
        self.calibration, self.judged = calibration, judged
        self.core = ov.Core()
        self.model = self.core.read_model(str(bundle.verified("onnx")))
        self.groups = layer_groups(self.model, islands_of(bundle.card))
        self.fp32 = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"])  # timing
        self.reference = reference
        self.folder = staging / CANDIDATES_DIR
        self.folder.mkdir(exist_ok=True)
        self.tried: list[dict] = []
        searched = {g.name for g in self.searched()}
        start = time.perf_counter()
        self.quantized = quantize_once(self.model, [clips for clips, _ in calibration],
                                       [node for g in self.groups if g.name not in searched for node in g.nodes])
        self.calibration_seconds = round(time.perf_counter() - start, 1)

    def searched(self) -> list[LayerGroup]:
        groups = [g for g in self.groups if self.settings.groups is None or g.name in self.settings.groups]
        if not groups:
            raise MDHRError(f"int8 search: none of the groups {', '.join(self.settings.groups)} is in the model "
                            f"(its groups: {', '.join(g.name for g in self.groups)})")
        return groups

    def close(self) -> None:
        self.fp32.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def candidate(self, int8_groups: list[LayerGroup]) -> dict:
        """``int8_groups`` in INT8 (the rest float32), judged, and timed if it passes."""
        import openvino as ov

        names = {g.name for g in int8_groups}
        quantized = with_float32_nodes(self.quantized, self.model,
                                       {node for g in self.groups if g.name not in names for node in g.nodes})
        path = self.folder / f"candidate_{len(self.tried)}.xml"
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        compiled = self.core.compile_model(quantized, "CPU", compile_config("int8"))
        del quantized
        request = compiled.create_infer_request()
        report, clips = self.judge(compiled, request)
        entry = {"int8_groups": sorted(names, key=self._order), "fp32_groups": [g.name for g in self.groups
                                                                                if g.name not in names],
                 "int8_macs_share": round(sum(g.macs_share for g in int8_groups), 4),
                 "speedup_vs_onnxruntime": None, "score": round(score(report), 5),
                 **{k: report[k] for k in ("au_max_abs_error", "au_decision_agreement", "median_decision_agreement",
                                           "region_argmax_agreement", "rank_correlation_min", "failures")},
                 "passed_agreement": report["passed"], "judged_clips": clips, "file": path.name, "passed": False}
        self.tried.append(entry)
        if report["passed"]:
            self.time(entry, request)
        del request, compiled
        self.say(f"int8 search: {'+'.join(entry['int8_groups'])} in INT8: "
                 f"{100 * report['median_decision_agreement']:.2f}% at the AU medians, rank correlation "
                 f"{report['rank_correlation_min'] or 0:.3f}"
                 + (f" on {clips} of {self.judged_clips} clips" if clips < self.judged_clips else "")
                 + (f", {entry['speedup_vs_onnxruntime']:.2f}x fp32" if entry["speedup_vs_onnxruntime"] else
                    " (fails agreement: not timed)")
                 + (" (passes)" if entry["passed"] else ""))
        return entry

    @property
    def judged_clips(self) -> int:
        return sum(real for _, real in self.judged)

    def judge(self, compiled, request) -> tuple[dict, int]:
        """The gate's report on the judging clips, batch by batch, stopping
        once the candidate fails for certain; and how many clips it saw."""
        batches = []
        for index, (clips, real) in enumerate(self.judged):
            outputs = request.infer({0: clips})
            batches.append({name: np.array(outputs[compiled.output(name)])[:real] for name in self.reference})
            if index + 1 < len(self.judged) and fails_for_certain(self.reference, batches, self.bundle.threshold,
                                                                  self.settings.min_agreement):
                break
        outputs = parity.concat(batches)
        seen = len(outputs["au_scores"])
        reference = {name: values[:seen] for name, values in self.reference.items()}
        report = parity.judged(reference, outputs, self.bundle.threshold, self.bundle.au_names, fp32=False,
                               min_agreement=self.settings.min_agreement, min_rank=self.settings.min_rank)
        return report, seen

    def time(self, entry: dict, request=None) -> None:
        """Time a judged candidate (``request``: its compiled model, else
        compiled again from its file) and settle its verdict."""
        if request is None:
            compiled = self.core.compile_model(str(self.folder / entry["file"]), "CPU", compile_config("int8"))
            request = compiled.create_infer_request()
        entry["speedup_vs_onnxruntime"] = self._speedup(request)
        entry["passed"] = entry["passed_agreement"] and entry["speedup_vs_onnxruntime"] >= self.settings.min_speedup

    def _order(self, name: str) -> int:
        return [g.name for g in self.groups].index(name)

    def _speedup(self, request) -> float:
        return speedup_over_fp32(self.fp32, request, self.judged[0][0], self.settings.timing_rounds)

    def run(self) -> dict:
        """Sensitivity, then the greedy frontier; returns the card's record
        (``chosen``: the entry of the model to ship)."""
        load_before = os.getloadavg()
        searched = self.searched()
        singles = {g.name: self.candidate([g]) for g in searched}
        ranked = sorted(searched, key=lambda g: (-singles[g.name]["score"], self._order(g.name)))
        passing = [g for g in ranked if singles[g.name]["passed_agreement"]]
        for size in range(2, len(passing) + 1):
            if not self.candidate(passing[:size])["passed_agreement"]:
                break
        chosen = choose(self.tried, self.settings, self.time)
        return {"method": "one NNCF calibration of every searched group; per-group sensitivity (each group alone "
                          "in INT8), then the groups that passed alone added least costly first while the agreement "
                          "gate passes; judging stops once a candidate fails for certain; only candidates that "
                          "pass agreement are timed (and, when none passes, failing ones from the most faithful "
                          "down until one is fast enough)",
                "calibration_seconds": self.calibration_seconds,
                "gate": self.settings.gate(), "groups": [{"name": g.name, "weighted_layers": g.weighted_layers,
                                                          "macs_share": g.macs_share, "nodes": len(g.nodes)}
                                                         for g in self.groups],
                "sensitivity_order": [g.name for g in ranked], "frontier": self.tried,
                "chosen": self.tried.index(chosen), "passed": chosen["passed"],
                "timing": f"median of {self.settings.timing_rounds} alternating runs of ONNX Runtime fp32 and the "
                          "candidate on one clip batch, same threads",
                "load_average": {"before": [round(x, 2) for x in load_before],
                                 "after": [round(x, 2) for x in os.getloadavg()]}}


def speedup_over_fp32(fp32: OnnxRuntimeRunner, request, batch: np.ndarray, rounds: int) -> float:
    """ONNX Runtime fp32's time over a compiled OpenVINO ``request``'s on one
    clip batch: the medians of ``rounds`` alternating runs (load changes hit
    both alike)."""
    return round(speedup(lambda: fp32.infer(batch), lambda: request.infer({0: batch}), rounds, warm_up=False), 3)


def fails_for_certain(reference: dict[str, np.ndarray], judged: list[dict[str, np.ndarray]], threshold: float,
                      min_agreement: float) -> bool:
    """Whether the decisions judged so far already disagree with the
    reference on more than the gate allows over all its frames (at each
    AU's median over all the reference's frames, or at the threshold)."""
    reference_scores = parity.frames_by_au(reference["au_scores"])
    scores = parity.frames_by_au(np.concatenate([batch["au_scores"] for batch in judged]))
    seen = reference_scores[:len(scores)]
    allowed = (1 - min_agreement) * reference_scores.size
    worst = max(int(np.sum((seen >= cut) != (scores >= cut)))
                for cut in (np.median(reference_scores, axis=0), threshold))
    return worst > allowed


def choose(tried: list[dict], settings: SearchSettings, time: Callable[[dict], None]) -> dict:
    """The fastest passing candidate; else the most faithful one at the
    minimum speed-up (else the fastest), which ships marked failing.
    ``time`` times a candidate not yet timed: failing ones are timed here
    from the most faithful down, only until one reaches the minimum."""
    passing = [c for c in tried if c["passed"]]
    if passing:
        return max(passing, key=lambda c: c["speedup_vs_onnxruntime"])
    for candidate in sorted(tried, key=lambda c: -c["score"]):
        if candidate["speedup_vs_onnxruntime"] is None:
            time(candidate)
        if candidate["speedup_vs_onnxruntime"] >= settings.min_speedup:
            return candidate
    return max(tried, key=lambda c: c["speedup_vs_onnxruntime"])
