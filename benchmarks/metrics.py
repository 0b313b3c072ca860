"""Agreement and accuracy measures beyond ``mdhr_export.parity.compare``
(which stays the judge of errors and region/threshold agreement).

NumPy only.  Scores are ``au_scores`` flattened to [frames, AUs].
"""
from __future__ import annotations

import numpy as np

# The judge's measures, re-exported for the benchmark tools.
from mdhr_export.parity import average_ranks, frames_by_au, median_decision_agreement, rank_correlation  # noqa: F401

# The official evaluation (CVI-SZU/MDHR utils/utils.py) guards its divisions
# with 1e-20, so an AU with no true positive scores F1 = 0.
_EPS = 1e-20


def confusion(decisions: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-AU TP/FP/FN/TN counts.  Only labels 1 and 0 count: the official
    evaluation ignores -1 (unlabelled frames and clip padding) and any other value."""
    positive, negative = labels == 1, labels == 0
    return {"TP": np.sum(decisions & positive, axis=0), "FP": np.sum(decisions & negative, axis=0),
            "FN": np.sum(~decisions & positive, axis=0), "TN": np.sum(~decisions & negative, axis=0)}


def official_f1(counts: dict[str, np.ndarray]) -> np.ndarray:
    """F1 per AU exactly as the official evaluation computes it."""
    tp, fp, fn = (counts[k].astype(np.float64) for k in ("TP", "FP", "FN"))
    precision = tp / (tp + fp + _EPS)
    recall = tp / (tp + fn + _EPS)
    return 2 * precision * recall / (precision + recall + _EPS)


def ground_truth_f1(scores: np.ndarray, labels: np.ndarray, threshold: float, au_names: list[str]) -> dict:
    """Per-AU and mean F1 of thresholded scores against ground-truth labels."""
    decisions = frames_by_au(scores) >= threshold
    labels = frames_by_au(labels)
    counts = confusion(decisions, labels)
    f1 = official_f1(counts)
    return {"f1_per_au": dict(zip(au_names, map(float, f1))), "mean_f1": float(f1.mean()),
            "labelled_frames": int(np.sum(np.any((labels == 0) | (labels == 1), axis=1)))}


def f1_against_reference(reference: np.ndarray, candidate: np.ndarray, threshold: float,
                         au_names: list[str]) -> dict[str, float | None]:
    """F1 of the candidate's decisions, taking the reference's as truth.  None
    for an AU neither side ever declares active: agreement is then perfect
    but F1 undefined (the official formula would say 0, which reads as total
    disagreement)."""
    ref, cand = frames_by_au(reference) >= threshold, frames_by_au(candidate) >= threshold
    f1 = official_f1(confusion(cand, ref.astype(np.int8)))
    undefined = ~ref.any(axis=0) & ~cand.any(axis=0)
    return {au: None if skip else float(value) for au, value, skip in zip(au_names, f1, undefined)}
