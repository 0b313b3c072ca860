"""The card ``mdhr-export`` writes is a contract.  The untrained DISFA
ResNet-50 4-frame export (the session's ``disfa_model_bundle``) writes the
card recorded in ``tests/data/card_DISFA_resnet_T4_random.json`` field for
field: the same keys at every level and in the same order at the top, the
same values for everything that is not a measurement or a tool's version,
and the same kind of value (and the same keys) for the rest.  A change to
what the card says fails here; record the new card on purpose."""
from __future__ import annotations

import json

from mdhr_runtime.card import ISLANDS, Card
from tests.support import DATA

RECORDED = DATA / "card_DISFA_resnet_T4_random.json"
# Measured on this machine (agreement, seconds, speed-ups), or depending on the
# versions of torch and onnx (file sizes and hashes, exported node names):
# compared by kind, their keys exactly.
LOOSE = {("parity",), ("timings_s",), ("artifact_bytes",), ("artifact_sha256",), (ISLANDS,), ("source", "torch"),
         ("source", "onnx"), ("stages", "frame_differences"), ("stages", "frame_batch", "speedup"),
         ("stages", "clip_centre", "speedup")}


def comparable(value, path: tuple = ()):
    """``value`` with each loose leaf (or list) replaced by its kind."""
    if isinstance(value, dict):
        return {key: comparable(item, (*path, key)) for key, item in value.items()}
    if any(path[:len(prefix)] == prefix for prefix in LOOSE):
        return type(value).__name__
    if isinstance(value, list):
        return [comparable(item, (*path, "[]")) for item in value]
    return value


def test_the_export_writes_the_recorded_card(disfa_model_bundle):
    written = json.loads((disfa_model_bundle / "mdhr.json").read_text())
    recorded = json.loads(RECORDED.read_text())
    assert list(written) == list(recorded)
    assert comparable(written) == comparable(recorded)
    assert set(written["timings_s"]) == set(recorded["timings_s"])
    # the recorded card is a valid card of this runtime, written back as read
    assert Card.from_json(recorded).to_json() == recorded
