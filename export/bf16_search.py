"""Which layer groups bf16 keeps float32, chosen by measurement, as the
INT8 search (``int8_search``) does it, without calibration: OpenVINO's
CPU plugin computes in bf16 where the CPU has it (AVX-512 BF16, AMX) and
keeps the marked groups' nodes float32 (``layer_groups.keep_fp32``).

1. each layer group alone in bf16, the rest float32 (sensitivity);
2. groups in bf16 cumulatively, least costly first, while the agreement
   gate passes.

Each candidate is judged against the fp32 ONNX on ONNX Runtime on the
judging clips first and timed (alternating runs on one clip batch) only if
it passes; the choice is ``int8_search.choose``'s: the fastest passing at
``min_speedup``, else the most faithful at it (else the fastest), marked
failing.  The card's ``bf16`` entry holds the groups kept float32 and the
frontier; the ``openvino-bf16`` runner and its gate read it.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from mdhr_export import parity
from mdhr_export.int8_search import SearchSettings, choose, score, speedup_over_fp32
from mdhr_runtime.backends.layer_groups import LayerGroup, islands_of, keep_fp32, layer_groups
from mdhr_runtime.backends.openvino_runner import compile_config
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.card import PrecisionChoice


class Bf16Search:
    def __init__(self, bundle, judged, reference: dict[str, np.ndarray], settings: SearchSettings,
                 say: Callable[[str], None]):
        import openvino as ov

        self.bundle, self.judged, self.settings, self.say = bundle, judged, settings, say
        self.core = ov.Core()
        self.islands = islands_of(bundle.card)
        self.groups = layer_groups(self.core.read_model(str(bundle.artifact("onnx"))), self.islands)
        self.fp32 = OnnxRuntimeRunner(bundle, "fp32", providers=["CPUExecutionProvider"])  # timing
        self.reference = reference  # the fp32 ONNX's outputs on ``judged``
        self.tried: list[dict] = []
        self._requests: dict[int, object] = {}

    def close(self) -> None:
        self.fp32.close()
        self._requests.clear()

    def _compile(self, kept: list[str]):
        model = self.core.read_model(str(self.bundle.artifact("onnx")))
        keep_fp32(model, kept, self.islands)
        return self.core.compile_model(model, "CPU", compile_config("bf16")).create_infer_request()

    def candidate(self, bf16_groups: list[LayerGroup]) -> dict:
        names = {g.name for g in bf16_groups}
        kept = [g.name for g in self.groups if g.name not in names]
        request = self._compile(kept)
        outputs = parity.concat([{name: np.array(request.infer({0: b})[name])[:real] for name in self.reference}
                                 for b, real in self.judged])
        report = parity.judged(self.reference, outputs, self.bundle.threshold, self.bundle.au_names, fp32=False,
                               min_agreement=self.settings.min_agreement, min_rank=self.settings.min_rank)
        entry = {"bf16_groups": [g.name for g in self.groups if g.name in names], "fp32_groups": kept,
                 "bf16_macs_share": round(sum(g.macs_share for g in bf16_groups), 4),
                 "speedup_vs_onnxruntime": None, "score": round(score(report), 5),
                 **{k: report[k] for k in ("au_max_abs_error", "au_decision_agreement", "median_decision_agreement",
                                           "region_argmax_agreement", "rank_correlation_min", "failures")},
                 "passed_agreement": report["passed"], "passed": False}
        self.tried.append(entry)
        if report["passed"]:
            self.time(entry, request)
        self.say(f"bf16 search: {'+'.join(entry['bf16_groups'])} in bf16: "
                 f"{100 * report['median_decision_agreement']:.2f}% at the AU medians, rank correlation "
                 f"{report['rank_correlation_min'] or 0:.3f}"
                 + (f", {entry['speedup_vs_onnxruntime']:.2f}x fp32" if entry["speedup_vs_onnxruntime"] else
                    " (fails agreement: not timed)") + (" (passes)" if entry["passed"] else ""))
        return entry

    def time(self, entry: dict, request=None) -> None:
        request = request or self._compile(entry["fp32_groups"])
        entry["speedup_vs_onnxruntime"] = speedup_over_fp32(self.fp32, request, self.judged[0][0],
                                                            self.settings.timing_rounds)
        entry["passed"] = entry["passed_agreement"] and entry["speedup_vs_onnxruntime"] >= self.settings.min_speedup

    def islands_error(self) -> float:
        """AU error against fp32 with every group kept float32 under bf16:
        about 1e-7 where the CPU plugin honours the marks, bf16's own error
        where it does not (measured so on an AVX-512 BF16 EPYC without AMX,
        OpenVINO 2026.4: the marks changed nothing there)."""
        batch, real = self.judged[0]
        out = np.array(self._compile([g.name for g in self.groups]).infer({0: batch})["au_scores"])[:real]
        return float(np.abs(out - self.reference["au_scores"][:real]).max())

    def run(self) -> dict:
        load_before = os.getloadavg()
        order = [g.name for g in self.groups]
        searched = [g for g in self.groups if self.settings.groups is None or g.name in self.settings.groups]
        singles = {g.name: self.candidate([g]) for g in searched}
        ranked = sorted(searched, key=lambda g: (-singles[g.name]["score"], order.index(g.name)))
        for size in range(2, len(ranked) + 1):
            if not self.candidate(ranked[:size])["passed_agreement"]:
                break
        chosen = choose(self.tried, self.settings, self.time)
        return {"method": "per-group sensitivity (each group alone in bf16), then groups added least costly first "
                          "while the agreement gate passes; only candidates that pass agreement are timed",
                "gate": self.settings.gate(), "sensitivity_order": [g.name for g in ranked], "frontier": self.tried,
                "chosen": self.tried.index(chosen), "passed": chosen["passed"],
                "timing": f"median of {self.settings.timing_rounds} alternating runs of ONNX Runtime fp32 and the "
                          "candidate on one clip batch",
                "load_average": {"before": [round(x, 2) for x in load_before],
                                 "after": [round(x, 2) for x in os.getloadavg()]}}


ISLANDS_TOLERANCE = 1e-4  # fp32 graphs agree to ~1e-7; bf16 anywhere moves AU scores by ~1e-3


def search_bf16(bundle, judged, reference: dict[str, np.ndarray], settings: SearchSettings,
                say: Callable[[str], None]) -> PrecisionChoice:
    """The card's ``bf16`` section: the groups kept float32 and the search;
    or, where OpenVINO does not keep marked nodes float32 under bf16 here,
    no search (every candidate would be the same model) and why."""
    search = Bf16Search(bundle, judged, reference, settings, say)
    try:
        error = search.islands_error()
        if error > ISLANDS_TOLERANCE:
            say(f"bf16: no search: with every group marked float32 the model still differs from fp32 by {error:.1e} "
                "(OpenVINO computes the marked nodes in bf16 on this CPU)")
            return PrecisionChoice.from_json({
                "kept_fp32": None, "skipped": "OpenVINO did not keep the marked nodes float32 under bf16 on "
                f"this CPU (every group marked: AU error {error:.1e} against fp32)"}, "bf16")
        record = search.run()
    finally:
        search.close()
    chosen = record["frontier"][record["chosen"]]
    say(f"bf16: {len(record['frontier'])} candidates; chosen: {', '.join(chosen['fp32_groups']) or 'nothing'} kept "
        f"float32, {chosen['speedup_vs_onnxruntime']:.2f}x fp32; it "
        + ("passes" if chosen["passed"] else "FAILS (the best found is kept)") + " the gate")
    return PrecisionChoice.from_json({"kept_fp32": chosen["fp32_groups"],
                                      "speedup_vs_onnxruntime_at_export": chosen["speedup_vs_onnxruntime"],
                                      "search": record}, "bf16")
