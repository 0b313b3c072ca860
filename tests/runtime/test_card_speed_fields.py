"""The card's typed fields for the speed work: ``bf16.kept_fp32`` (layer
group names the bf16 runner keeps float32) and ``stages.frame_batch``
(frames per call, bit-identical), each refused in one line when wrong."""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdhr_runtime.card import ISLAND_PARTS, LAYER_GROUP_MODULES, Card, CardError

GROUPS = ["Backbone.stem", "Backbone.layer1", "Backbone.layer4", *LAYER_GROUP_MODULES, *ISLAND_PARTS]
HEALTH = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def card(disfa_short_bundle) -> dict:
    return json.loads((disfa_short_bundle / "mdhr.json").read_text())


def with_bf16(card: dict, entry) -> dict:
    return {**copy.deepcopy(card), "bf16": entry}


def test_bf16_choice_is_read_typed_and_written_back(card):
    entry = {"kept_fp32": ["Backbone.layer3", "region_modelling"], "search": {"chosen": 1, "frontier": []}}
    typed = Card.from_json(with_bf16(card, entry))
    assert typed.bf16.kept_fp32 == ("Backbone.layer3", "region_modelling")
    assert typed.to_json()["bf16"] == entry
    assert Card.from_json(with_bf16(card, {"kept_fp32": None, "skipped": "why"})).bf16.kept_fp32 is None
    assert Card.from_json(card).bf16 is None


@settings(max_examples=200, deadline=None, suppress_health_check=HEALTH)
@given(groups=st.lists(st.sampled_from(GROUPS), max_size=8))
def test_known_layer_group_names_are_accepted(card, groups):
    assert Card.from_json(with_bf16(card, {"kept_fp32": groups})).bf16.kept_fp32 == tuple(groups)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=10)
NOT_A_GROUP = st.one_of(
    st.text(max_size=80).filter(lambda t: t not in GROUPS and not t.startswith("Backbone.")),
    st.sampled_from(["../../etc/passwd", "Backbone.", "Backbone.layer3/x", "Backbone.a b", "MFD; rm -rf /",
                     "Backbone." + "x" * 200, "model.Backbone.layer3", "region_modelling\0"]),
    st.integers(), st.booleans(), st.floats(), st.none(), st.lists(st.text(max_size=5), max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=HEALTH)
@given(good=st.lists(st.sampled_from(GROUPS), max_size=3), bad=NOT_A_GROUP, at=st.integers(0, 3))
def test_anything_but_a_group_name_in_kept_fp32_is_refused_naming_it(card, good, bad, at):
    groups = [*good[:at], bad, *good[at:]]
    with pytest.raises(CardError) as refused:
        Card.from_json(with_bf16(card, {"kept_fp32": groups}))
    assert refused.value.field.startswith("bf16.kept_fp32[") and "\n" not in str(refused.value)


@settings(max_examples=200, deadline=None, suppress_health_check=HEALTH)
@given(value=JSON)
def test_any_json_as_kept_fp32_is_a_list_of_group_names_or_refused(card, value):
    try:
        typed = Card.from_json(with_bf16(card, {"kept_fp32": value}))
    except CardError as refused:
        assert str(refused).startswith("bf16.kept_fp32") and "\n" not in str(refused)
        return
    assert value is None or (isinstance(value, list) and all(v in GROUPS or v.startswith("Backbone.") for v in value))
    assert typed.bf16.kept_fp32 == (None if value is None else tuple(value))


def test_frame_batch_is_read_typed(card):
    typed = Card.from_json(card)
    assert "frame_batch" in typed.artifacts
    assert typed.stages.frame_batch.bit_identical and typed.stages.frame_batch.frames == card["stages"]["frame_batch"]["frames"]


@pytest.mark.parametrize("change, field", [
    (lambda fb: fb.pop("frames"), "stages.frame_batch.frames"),
    (lambda fb: fb.update(frames=0), "stages.frame_batch.frames"),
    (lambda fb: fb.update(frames=10 ** 9), "stages.frame_batch.frames"),
    (lambda fb: fb.update(frames=2.0), "stages.frame_batch.frames"),
    (lambda fb: fb.update(frames=True), "stages.frame_batch.frames"),
    (lambda fb: fb.update(frames="2"), "stages.frame_batch.frames"),
    (lambda fb: fb.pop("bit_identical"), "stages.frame_batch.bit_identical"),
    (lambda fb: fb.update(bit_identical=1), "stages.frame_batch.bit_identical"),
    (lambda fb: fb.update(bit_identical=False), "stages.frame_batch"),
])
def test_a_wrong_frame_batch_account_is_refused_naming_the_field(card, change, field):
    card = copy.deepcopy(card)
    change(card["stages"]["frame_batch"])
    with pytest.raises(CardError) as refused:
        Card.from_json(card)
    assert refused.value.field == field


def test_a_frame_batch_graph_the_stages_do_not_describe_is_refused(card):
    card = copy.deepcopy(card)
    del card["stages"]["frame_batch"]
    with pytest.raises(CardError) as refused:
        Card.from_json(card)
    assert refused.value.field == "stages.frame_batch"
    card["artifacts"]["frame_batch"] = None  # without the graph, no account is needed
    assert Card.from_json(card).stages.frame_batch is None
