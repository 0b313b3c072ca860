"""The card's typed fields for the speed work: ``bf16.kept_fp32`` (layer
group names the bf16 runner keeps float32), ``stages.frame_batch`` (frames
per call) and ``stages.clip_centre`` (the window position), each with its
bit identity and speed-up, each refused in one line when wrong."""
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


FASTER_GRAPHS = {"frame_batch": "frames", "clip_centre": "position"}  # each account's count field


def test_the_faster_graphs_are_read_typed(card):
    typed = Card.from_json(card)
    assert {"frame_batch", "clip_centre"} <= set(typed.artifacts)
    assert typed.stages.frame_batch.bit_identical and typed.stages.frame_batch.frames == card["stages"]["frame_batch"]["frames"]
    assert typed.stages.clip_centre.bit_identical
    assert typed.stages.clip_centre.position == card["stages"]["clip_centre"]["position"]


BAD_COUNTS = [(lambda a, n: a.pop(n), ""), (lambda a, n: a.update({n: -1}), ""),
              (lambda a, n: a.update({n: 10 ** 9}), ""), (lambda a, n: a.update({n: 2.0}), ""),
              (lambda a, n: a.update({n: True}), ""), (lambda a, n: a.update({n: "2"}), ""),
              (lambda a, n: a.pop("bit_identical"), "bit_identical"),
              (lambda a, n: a.update(bit_identical=1), "bit_identical"),
              (lambda a, n: a.update(speedup="fast"), "speedup"), (lambda a, n: a.update(speedup=-1.0), "speedup"),
              (lambda a, n: a.update(differing_outputs="static"), "differing_outputs")]


@pytest.mark.parametrize("kind", FASTER_GRAPHS)
@pytest.mark.parametrize("change, field", BAD_COUNTS)
def test_a_wrong_faster_graph_account_is_refused_naming_the_field(card, kind, change, field):
    card = copy.deepcopy(card)
    change(card["stages"][kind], FASTER_GRAPHS[kind])
    with pytest.raises(CardError) as refused:
        Card.from_json(card)
    assert refused.value.field == f"stages.{kind}.{field or FASTER_GRAPHS[kind]}"


@pytest.mark.parametrize("kind", FASTER_GRAPHS)
def test_a_faster_graph_the_stages_do_not_describe_as_bit_identical_is_refused(card, kind):
    card = copy.deepcopy(card)
    card["stages"][kind]["bit_identical"] = False
    with pytest.raises(CardError) as refused:
        Card.from_json(card)
    assert refused.value.field == f"stages.{kind}"
    del card["stages"][kind]
    with pytest.raises(CardError) as refused:
        Card.from_json(card)
    assert refused.value.field == f"stages.{kind}"
    card["artifacts"][kind] = None  # without the graph, no account is needed
    assert getattr(Card.from_json(card).stages, kind) is None
