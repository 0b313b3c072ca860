"""The agreement gates of reduced-precision CPU runners, as the export
measured them and wrote them in the card (``parity.reduced_precision``).

A runner passes when, on real face clips against the fp32 ONNX, decisions
at each AU's median score agree on at least 99% of frames, and the rank
correlation of every AU's scores is at least 0.99 (with decisions at the
threshold and region argmax at 99% too; ``mdhr_export.parity``).  ``auto``
never picks a runner that failed or was not measured; a user who forces one
gets a one-line warning naming what was measured.
"""
from __future__ import annotations

from mdhr_runtime.bundle import Bundle
from mdhr_runtime.choices import BACKEND_TABLE


def gate_text(min_agreement: float = 0.99, min_rank: float | None = 0.99) -> str:
    """The gate in words, as the card records it."""
    rank = "" if min_rank is None else f" and every AU's rank correlation >= {min_rank:g}"
    return f"decisions at each AU's median agree on >= {100 * min_agreement:g}% of frames{rank}"


GATE = gate_text()
# Fastest first: the order in which auto considers them on a CPU.
# The runtime's reduced-precision CPU backends, fastest first (auto takes the first that passed).
GATED_CPU_BACKENDS = tuple(b.name for precision in ("int8", "bf16") for b in BACKEND_TABLE
                           if b.runtime and b.family == "openvino" and b.precision == precision)


def recorded(bundle: Bundle, backend: str) -> dict | None:
    """The card's gate entry for ``backend``, or None when never measured."""
    return bundle.card.report("parity", "reduced_precision", "runners", backend)


def summary(entry: dict) -> str:
    """The measured agreement in a few words."""
    if entry.get("status") != "measured":
        return f"not measured at export ({entry.get('reason', 'no reason recorded')})"
    rank = entry.get("rank_correlation_min")
    return (f"decisions agree on {100 * entry['median_decision_agreement']:.2f}% at the AU medians, "
            f"lowest AU rank correlation {'n/a' if rank is None else f'{rank:.3f}'}, region argmax "
            f"{100 * entry['region_argmax_agreement']:.2f}%, on {entry['frames']} frames of "
            f"{entry.get('clips', '?')} face clips")


def passed(bundle: Bundle, backend: str) -> tuple[bool, str]:
    """Whether ``backend`` passed its gate at export, and what was measured."""
    entry = recorded(bundle, backend)
    if entry is None:
        return False, "agreement never measured (mdhr-export ... --calibrate VIDEO measures it)"
    return bool(entry.get("passed")), summary(entry)


def forced_warning(bundle: Bundle, backend: str) -> str | None:
    """One line for a user who chose a reduced-precision runner that did not
    pass its gate; None when it passed (or is not gated)."""
    if backend not in GATED_CPU_BACKENDS:
        return None
    ok, measured = passed(bundle, backend)
    if ok:
        return None
    gate = bundle.card.report("parity", "reduced_precision", "gate") or GATE
    return (f"warning: {backend} did not pass the agreement gate against fp32 ({gate}): {measured}; "
            "its outputs may differ from the fp32 model's")
