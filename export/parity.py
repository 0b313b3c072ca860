"""Comparators: how far a backend's outputs are from a reference's.

NumPy only, so the runtime-side tools (mdhr-parity) use the same judge as
export time.  Outputs are dicts keyed by the bundle's output names:
``au_scores`` [B, T, N] and ``region_<name>`` [B, T, k].
"""
from __future__ import annotations

import numpy as np

FP32_AU_TOLERANCE = 1e-4
REDUCED_PRECISION_MIN_AGREEMENT = 0.99
PARITY_CLIPS = 3


def region_names(outputs: dict[str, np.ndarray]) -> list[str]:
    return [k for k in outputs if k.startswith("region_")]


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            threshold: float) -> dict:
    """Errors of ``candidate`` against ``reference`` on the same inputs."""
    ref_au, cand_au = reference["au_scores"], candidate["au_scores"]
    au_error = np.abs(cand_au.astype(np.float64) - ref_au)
    report = {
        "frames": int(np.prod(ref_au.shape[:-1])),
        "au_max_abs_error": float(au_error.max()),
        "au_mean_abs_error": float(au_error.mean()),
        "au_decision_agreement": float(np.mean((cand_au >= threshold) == (ref_au >= threshold))),
        "regions": {},
    }
    for name in region_names(reference):
        ref, cand = reference[name], candidate[name]
        report["regions"][name.removeprefix("region_")] = {
            "max_abs_error": float(np.abs(cand.astype(np.float64) - ref).max()),
            "mean_abs_error": float(np.abs(cand.astype(np.float64) - ref).mean()),
            "argmax_agreement": float(np.mean(cand.argmax(-1) == ref.argmax(-1))),
        }
    report["region_argmax_agreement"] = min(
        (r["argmax_agreement"] for r in report["regions"].values()), default=1.0)
    return report


def fp32_failures(report: dict, au_tolerance: float = FP32_AU_TOLERANCE) -> list[str]:
    """Why a float32 backend is not faithful (empty when it is)."""
    problems = []
    if not report["au_max_abs_error"] <= au_tolerance:  # NaN fails too
        problems.append(f"AU score error {report['au_max_abs_error']:.2e} > {au_tolerance:.0e}")
    for name, region in report["regions"].items():
        if region["argmax_agreement"] < 1.0:
            problems.append(f"region {name} argmax differs on "
                            f"{100 * (1 - region['argmax_agreement']):.1f}% of frames")
    return problems


def concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Outputs of several runs joined along the batch axis."""
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def parity_clips(batch: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs for parity, batched: white noise (the golden recipe's kind),
    and smooth images with tiny frame-to-frame changes, like real video,
    where the temporal difference is small and numerically delicate."""
    rng = np.random.default_rng(seed)
    clips = [rng.standard_normal((frames, 3, 224, 224), dtype=np.float32)]
    while len(clips) < max(PARITY_CLIPS, batch):
        coarse = rng.standard_normal((3, 28, 28)).astype(np.float32)
        still = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
        drift = rng.standard_normal((frames, 3, 224, 224)).astype(np.float32) * 0.02
        clips.append(still[None] + drift.cumsum(axis=0))
    batches = -(-len(clips) // batch)
    clips += clips[: batches * batch - len(clips)]
    return [np.stack(clips[i * batch:(i + 1) * batch]) for i in range(batches)]


def runner_outputs(runner, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    return concat([runner.infer(batch) for batch in clips])
