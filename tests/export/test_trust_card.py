"""What a bundle and a checkpoint are trusted with, tested by classes:
every card field x every kind of wrong value; artifact names and
external-data locations x every way out of the bundle; checkpoint archives
x bombs, lies and damage; altered artifacts.  Each refusal is one line,
exit 2 where a command is involved, with nothing written."""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mdhr
from mdhr.errors import MDHRError
from mdhr.loading import MAX_CHECKPOINT_BYTES, MAX_ENTRIES, MAX_STATE_BYTES, read_state_dict
from mdhr_export.cli import main as export_main
from mdhr_export.cli import triton_main
from mdhr_runtime import integrity
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.stages import StageRunner
from mdhr_runtime.bundle import GRAPH_KINDS, load_bundle, write_card
from mdhr_runtime.card import TYPED_KEYS, Card
from mdhr_runtime.cli.run import main as run_main
from tests.support.refusals import one_line_refusal

CASES: dict[str, int] = {}  # cases generated per class, printed at the end of the session for the report


@pytest.fixture(autouse=True)
def _own_records(tmp_path, monkeypatch):
    """Each test starts with no verified-once record: every file is hashed."""
    monkeypatch.setenv("MDHR_VERIFIED_CACHE", str(tmp_path / "verified"))


def linked_copy(source: Path, folder: Path) -> Path:
    """A copy of a bundle whose files are hard links of the fixture's (the
    tests replace a file before changing it: the fixture is never altered)
    and whose card is its own file."""
    folder.mkdir()
    for path in source.iterdir():
        if path.name == "mdhr.json":
            shutil.copy(path, folder / path.name)
        elif path.is_file():
            os.link(path, folder / path.name)
    return folder


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def read_card(bundle: Path) -> dict:
    return json.loads((bundle / "mdhr.json").read_text())


def write_raw_card(bundle: Path, card) -> None:
    (bundle / "mdhr.json").write_text(json.dumps(card, allow_nan=True))


def refused_in_one_line(error: MDHRError, *words: str) -> str:
    text = str(error)
    assert "\n" not in text and text.strip() == text and "Traceback" not in text, text
    for word in words:
        assert word in text, text
    return text


# -- class 1: every card field x every kind of wrong value ---------------------

def field_paths(card: dict) -> list[tuple]:
    """Every field the toolkit reads (the typed keys), containers and leaves."""
    paths = []

    def walk(value, path):
        paths.append(path)
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*path, key))
        elif isinstance(value, list) and len(value) <= 16:
            for index, child in enumerate(value):
                walk(child, (*path, index))

    for key in TYPED_KEYS:
        if key in card:
            walk(card[key], (key,))
    return paths


def get(card, path):
    for key in path:
        card = card[key]
    return card


def wrong_type(value):
    if isinstance(value, bool):
        return "true"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return {"0": value[0] if value else None}
    if isinstance(value, dict):
        return list(value.values())
    return "text"


MUTATIONS = {
    "missing": None,  # the key removed (an item of a list: the list shortened)
    "wrong type": wrong_type,
    "bool": lambda value: True,
    "NaN": lambda value: math.nan,
    "inf": lambda value: math.inf,
    "huge": lambda value: 10 ** 30 if not isinstance(value, str) else "x" * 100_000,
    "negative": lambda value: -1,
    "path-like": lambda value: "../../../../tmp/victim/x",
}
# (field, mutation) a card may carry and still be right: each with why.
LEGITIMATE = {
    (("threshold",), "negative"): "scores are cosines in [-1, 1]: -1 is a threshold (every AU active)",
    (("regions",), "missing"): "the regions follow from the dataset",
    (("untrained",), "missing"): "absent is false, and a trained card names its checkpoint",
    (("target",), "missing"): "absent is the default target, all",
    (("source",), "missing"): "absent on untrained cards: no checkpoint",
    (("input", "name"), "missing"): "absent is the export's input name, clips",
    (("input", "layout"), "missing"): "a description, fixed by the runtime",
    (("source", "torch"), "missing"): "a version for the record",
    (("source", "onnx"), "missing"): "a version for the record",
    (("source", "opset"), "missing"): "absent is the default opset",
    (("stages",), "missing"): "a bundle without stage graphs",
    (("artifacts", "frame_batch"), "missing"): "a bundle without the hop-per-call frame stage: one frame per call",
    (("artifacts", "clip_centre"), "missing"): "a bundle without the centre-only clip stage: the clip stage at hop 1",
    (("stages", "cached_bytes_per_frame"), "missing"): "a figure for the record",
    (("reduced_precision_islands",), "missing"): "bf16 then says the card names no islands",
    (("reduced_precision_islands",), "another bundle's value"):
        "node names, matched against the graph where used (bf16 refuses a card none of whose names match)",
    (("reduced_precision_islands", "region_modelling"), "another bundle's value"): "as above",
    (("reduced_precision_islands", "frame_differences"), "another bundle's value"): "as above",
    (("input", "layout"), "path-like"): "a description, never a path",
    (("source", "torch"), "path-like"): "a version for the record, never a path",
    (("source", "onnx"), "path-like"): "a version for the record, never a path",
    (("source", "torch"), "wrong type"): "a version for the record: null (the tiny bundle's) or text",
    (("source", "torch"), "another bundle's value"): "a version for the record",
}


def mutated(card: dict, path: tuple, mutation: str):
    """The card with the field at ``path`` changed; None when the change is no change."""
    card = copy.deepcopy(card)
    parent, key = get(card, path[:-1]), path[-1]
    if mutation == "missing" and parent[key] is None:
        return None  # an absent artifact is listed as null or left out alike
    if mutation == "missing":
        del parent[key]
        return card
    new = MUTATIONS[mutation](parent[key])
    if type(new) is type(parent[key]) and new == parent[key]:
        return None
    parent[key] = new
    return card


def outcome(bundle: Path, card) -> str:
    """'refused' (one line) or 'accepted' once every artifact is verified and
    the whole model and the stages are open (what a run does before its first
    frame)."""
    write_raw_card(bundle, card)
    try:
        loaded = load_bundle(bundle)
        for kind in loaded.card.artifacts:
            loaded.verified(kind)
        OnnxRuntimeRunner(loaded, providers=["CPUExecutionProvider"], threads=1).close()
        stages = StageRunner(loaded, providers=["CPUExecutionProvider"], threads=1)
        try:  # a hop per call where the bundle has frame_batch: its graph opens on the first hop
            features, _ = stages.run_frames([np.zeros((3, 224, 224), np.float32)] * max(stages.batch_frames,
                                                                                        stages.frames), None)
            if stages.centre_position is not None:  # and the centre-only clip stage on the first held window
                stages.clip_centre(features[:stages.frames])
        finally:
            stages.close()
    except MDHRError as error:
        refused_in_one_line(error)
        return "refused"
    return "accepted"


def is_report(path: tuple) -> bool:
    """Fields of the stage account and island lists the runtime does not read."""
    return (path[0] == "stages" and path[1:2] not in (("frame_stage",), ("clip_stage",), ("cached_bytes_per_frame",),
                                                      ("frame_batch",), ("clip_centre",))
            or path[:2] == ("stages", "frame_batch") and path[2:3] not in (("frames",), ("bit_identical",))
            or path[:2] == ("stages", "clip_centre") and path[2:3] not in (("position",), ("bit_identical",))
            or path[:2] == ("stages", "frame_stage") and path[2:3] != ("inputs",)
            or path[:3] == ("stages", "frame_stage", "inputs") and len(path) > 3 and path[3] == "frame"
            or path[:2] == ("stages", "clip_stage") and path[2:3] != ("outputs",)
            or path[0] == "reduced_precision_islands" and len(path) > 2)


def test_every_card_field_with_every_wrong_value_is_refused(disfa_short_bundle, bp4d_bundle, tmp_path):
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    card, other = read_card(disfa_short_bundle), read_card(bp4d_bundle)
    paths = [p for p in field_paths(card) if not is_report(p)]
    cases, accepted = 0, []
    for path in paths:
        for mutation in MUTATIONS:
            changed = mutated(card, path, mutation)
            if changed is None:
                continue
            cases += 1
            if outcome(bundle, changed) == "accepted" and (path, mutation) not in LEGITIMATE:
                accepted.append((path, mutation))
        try:  # another bundle's value, where it differs
            theirs = get(other, path)
        except (KeyError, IndexError, TypeError):
            continue
        if theirs != get(card, path):
            changed = copy.deepcopy(card)
            get(changed, path[:-1])[path[-1]] = theirs
            cases += 1
            if outcome(bundle, changed) == "accepted" and (path, "another bundle's value") not in LEGITIMATE:
                accepted.append((path, "another bundle's value"))
    CASES["card fields"] = cases
    assert len(paths) > 60 and cases > 500
    assert accepted == [], "\n".join(map(str, accepted))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_in_any_card_field_is_refused_in_one_line_or_read_as_typed(disfa_short_bundle, data):
    """Property: whatever JSON value lands in whatever field, loading either
    refuses in one line or gives a card whose fields have their types: never
    an internal error."""
    card = read_card(disfa_short_bundle)
    path = data.draw(st.sampled_from(field_paths(card)))
    value = data.draw(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
        max_leaves=12))
    changed = copy.deepcopy(card)
    get(changed, path[:-1])[path[-1]] = value
    try:
        loaded = Card.from_json(json.loads(json.dumps(changed, allow_nan=True)))  # as read from mdhr.json
    except Exception as error:  # CardError names the field
        assert type(error).__name__ == "CardError" and "\n" not in str(error), repr(error)
        return
    assert isinstance(loaded.threshold, float) and math.isfinite(loaded.threshold)
    assert all(type(d) is int for d in loaded.input.shape) and all(math.isfinite(v) for v in loaded.input.std)
    assert all("/" not in a.name and ".." != a.name for a in loaded.artifacts.values())
    assert Card.from_json(loaded.to_json()) == loaded  # what the export writes, it reads back


def test_damaged_cards_through_the_command_exit_2_and_write_nothing(disfa_short_bundle, face_avi, tmp_path):
    """One card of each kind through mdhr-run: exit 2, one line, no output."""
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    card = read_card(disfa_short_bundle)
    changes = {
        "threshold NaN": (("threshold",), math.nan, "threshold"),
        "bool batch": (("input", "shape", 0), True, "input.shape[0]"),
        "dataset path": (("dataset",), "x/../../../../victim/y", "dataset"),
        "artifact absolute": (("artifacts", "weights"), "/etc/passwd", "artifacts.weights"),
        "huge tap": (("stages", "frame_stage", "inputs", "previous_tap1"), [1, 10 ** 6, 10 ** 6], "previous_tap1"),
        "format": (("format",), 1, "bundle format 1"),
    }
    for name, (path, value, words) in changes.items():
        changed = copy.deepcopy(card)
        get(changed, path[:-1])[path[-1]] = value
        write_raw_card(bundle, changed)
        out = tmp_path / "out.csv"
        one_line_refusal(run_main, [face_avi, "--model", bundle, "--out", out], words)
        assert not out.exists(), name


# -- class 2: artifact names and external-data locations ---------------------

WAYS_OUT = {
    "absolute": "/etc/hostname",
    "dot-dot": "../outside.bin",
    "deep dot-dot": "../../../../../../etc/hostname",
    "separator": "sub/weights.bin",
    "backslash": "..\\outside.bin",
    "NUL": "weights.bin\0.txt",
    "very long": "w" * 300 + ".bin",
    "dot": ".",
    "the card": "mdhr.json",
    "empty": "",
    "drive": "C:weights.bin",
}


@pytest.mark.parametrize("kind", ["onnx", "weights", "frame_stage", "engine"])
@pytest.mark.parametrize("way", WAYS_OUT)
def test_artifact_names_leaving_the_bundle_are_refused(disfa_short_bundle, tmp_path, kind, way):
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    card = read_card(disfa_short_bundle)
    card["artifacts"][kind] = WAYS_OUT[way]
    card["artifact_bytes"][kind], card["artifact_sha256"][kind] = 10, "0" * 64
    write_raw_card(bundle, card)
    with pytest.raises(MDHRError) as refused:
        load_bundle(bundle)
    refused_in_one_line(refused.value, f"artifacts.{kind}", "export the bundle again")
    CASES["artifact names"] = CASES.get("artifact names", 0) + 1


def graph_with_location(source: Path, target: Path, location: str, where: str = "initializer") -> None:
    """``source``'s graph with its external data read from ``location``,
    written to ``target`` (in an initializer, or in a Constant node)."""
    proto = onnx.load(str(source), load_external_data=False)
    tensors = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if where == "constant":
        tensor = onnx.TensorProto()
        tensor.CopyFrom(tensors[0])
        tensor.name = "hostile_constant"
        proto.graph.node.append(onnx.helper.make_node("Constant", [], ["hostile_out"], value=tensor))
        tensors = [proto.graph.node[-1].attribute[0].t]
    for tensor in tensors:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    target.unlink()
    onnx.save_model(proto, str(target))


LOCATIONS = {**{k: v for k, v in WAYS_OUT.items() if k not in ("NUL", "dot", "empty")},
             "a file of the bundle the card does not name": "extra.bin",
             "another graph": "clip_stage.onnx"}


@pytest.mark.parametrize("where", ["initializer", "constant"])
@pytest.mark.parametrize("way", LOCATIONS)
def test_external_data_leaving_the_bundle_is_refused_before_any_reader(disfa_short_bundle, tmp_path, way, where):
    """The graph and card are consistent (a hostile bundle seals its own
    card); the location is refused before ONNX Runtime or mdhr-triton
    open anything, in one line, and the repository is not written."""
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    (tmp_path / "outside.bin").write_bytes((bundle / "weights.bin").read_bytes()[:4096])
    (bundle / "extra.bin").write_bytes(b"\0" * 4096)
    graph_with_location(disfa_short_bundle / "model.onnx", bundle / "model.onnx", LOCATIONS[way], where)
    write_card(bundle, read_card(bundle))
    with pytest.raises(MDHRError) as refused:
        load_bundle(bundle).verified("onnx")
    refused_in_one_line(refused.value, str(bundle / "model.onnx"), repr(LOCATIONS[way][:80]))
    repo = tmp_path / "repo"
    one_line_refusal(triton_main, [bundle, repo], "reads external data from")
    assert not repo.exists() and not [p for p in tmp_path.iterdir() if ".mdhr-" in p.name]
    CASES["external-data locations"] = CASES.get("external-data locations", 0) + 1


@pytest.mark.parametrize("kind", ["weights", "onnx", "frame_stage"])
def test_an_artifact_that_is_a_symbolic_link_out_of_the_bundle_is_refused(disfa_short_bundle, tmp_path, kind):
    """A link to a file of the very same content: still refused, since what
    the link leads to can change after the check."""
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    name = read_card(bundle)["artifacts"][kind]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.link(bundle / name, outside / name)
    (bundle / name).unlink()
    (bundle / name).symlink_to(outside / name)
    with pytest.raises(MDHRError) as refused:
        loaded = load_bundle(bundle)
        for each in GRAPH_KINDS:
            loaded.verified(each)
    refused_in_one_line(refused.value, str(bundle / name), "symbolic link")
    if kind in ("onnx", "weights"):  # what mdhr-triton reads (it never opens the stages)
        one_line_refusal(triton_main, [bundle, tmp_path / "repo"], "symbolic link")
        assert not (tmp_path / "repo").exists()
    CASES["artifact links"] = CASES.get("artifact links", 0) + 1


def test_mdhr_triton_cannot_be_steered_outside_its_repository(disfa_short_bundle, tmp_path):
    """The two hostile bundles of the report: a dataset that climbs out of
    the repository, an engine named by an absolute path."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.pbtxt").write_text("mine")
    outside_engine = tmp_path / "system.engine"
    outside_engine.write_bytes(b"not yours")
    for field, value in (("dataset", "x/../../../../victim/y"), ("engine", str(outside_engine))):
        bundle = linked_copy(disfa_short_bundle, tmp_path / f"bundle-{field}")
        card = read_card(bundle)
        if field == "engine":
            card["artifacts"]["engine"] = value
            card["artifact_bytes"]["engine"], card["artifact_sha256"]["engine"] = 9, integrity.sha256_of(outside_engine)
        else:
            card["dataset"] = value
        write_raw_card(bundle, card)
        repo = tmp_path / "repo" / "models"
        one_line_refusal(triton_main, [bundle, repo], "damaged model card")
        assert not (tmp_path / "repo").exists()
    assert (victim / "config.pbtxt").read_text() == "mine" and os.listdir(victim) == ["config.pbtxt"]


def test_mdhr_triton_copies_exactly_the_verified_files(disfa_short_bundle, tmp_path):
    repo = tmp_path / "repo"
    result = CliRunner().invoke(triton_main, [str(disfa_short_bundle), str(repo), "--cpu"])
    assert result.exit_code == 0, result.output
    card = load_bundle(disfa_short_bundle).card
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    assert files == ["mdhr_disfa_resnet/1/model.onnx", "mdhr_disfa_resnet/1/weights.bin",
                     "mdhr_disfa_resnet/au_names.txt", "mdhr_disfa_resnet/config.pbtxt"]
    for path, kind in (("1/model.onnx", "onnx"), ("1/weights.bin", "weights")):
        copied = repo / "mdhr_disfa_resnet" / path
        assert copied.stat().st_nlink == 1 and not copied.is_symlink()
        assert integrity.sha256_of(copied) == card.artifacts[kind].sha256


# -- class 3: altered artifacts ---------------------------------------------------

def flip_one_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    replace_file(path, bytes(data))


@pytest.mark.parametrize("kind", ["weights", "onnx", "frame_stage", "clip_stage"])
def test_one_changed_byte_in_any_artifact_is_refused_naming_it(disfa_short_bundle, face_avi, tmp_path, kind):
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    name = read_card(bundle)["artifacts"][kind]
    flip_one_byte(bundle / name, (bundle / name).stat().st_size // 2)
    out = tmp_path / "out.csv"
    windows = "official" if kind == "onnx" else "centred"
    line = one_line_refusal(run_main, [face_avi, "--model", bundle, "--out", out, "--windows", windows],
                            str(bundle / name), "export the bundle again")
    assert "content is not what the bundle was exported with" in line
    assert not out.exists()
    CASES["altered artifacts"] = CASES.get("altered artifacts", 0) + 1


def test_a_frame_stage_and_weights_from_another_bundle_are_refused(disfa_short_bundle, bp4d_bundle, face_avi,
                                                                     tmp_path):
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    for name in ("frame_stage.onnx", "weights.bin"):
        (bundle / name).unlink()
        os.link(bp4d_bundle / name, bundle / name)
    out = tmp_path / "out.csv"
    one_line_refusal(run_main, [face_avi, "--model", bundle, "--out", out], "the card says", "export the bundle again")
    assert not out.exists()


def test_a_verified_once_record_does_not_survive_a_change(disfa_short_bundle, tmp_path):
    """A change that keeps the size and puts the modification time back
    still changes the change time, so the file is hashed again."""
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    shutil.copy(disfa_short_bundle / "weights.bin", tmp_path / "w")
    (bundle / "weights.bin").unlink()
    os.replace(tmp_path / "w", bundle / "weights.bin")
    load_bundle(bundle).verified("onnx")  # verified: remembered
    assert len(list((tmp_path / "verified").iterdir())) >= 2
    before = os.stat(bundle / "weights.bin")
    with open(bundle / "weights.bin", "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(bundle / "weights.bin", ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(MDHRError) as refused:
        load_bundle(bundle).verified("onnx")
    refused_in_one_line(refused.value, "weights.bin", "content is not what the bundle was exported with")


def test_a_card_whose_au_count_differs_from_the_graph_is_refused_before_the_work(disfa_short_bundle, bp4d_bundle,
                                                                               face_avi, tmp_path):
    """A consistent BP4D card (12 AUs) over DISFA's graphs (8): named before
    the first frame, not found wrong after the work."""
    bundle = linked_copy(disfa_short_bundle, tmp_path / "bundle")
    card, theirs = read_card(bundle), read_card(bp4d_bundle)
    for key in ("dataset", "au_names", "outputs", "regions"):
        card[key] = theirs[key]
    card["stages"]["clip_stage"]["outputs"] = theirs["outputs"]
    write_raw_card(bundle, card)
    for windows in ("official", "centred"):
        out = tmp_path / "out.csv"
        one_line_refusal(run_main, [face_avi, "--model", bundle, "--out", out, "--windows", windows],
                         "its card describes")
        assert not out.exists()


# -- class 4: checkpoint archives -------------------------------------------------

def small_checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.randn(64, 64)}}, path)
    return path


def patch_sizes(path: Path, member: str, size: int) -> None:
    """Make the archive declare ``size`` bytes for ``member`` (local header
    and central directory) without writing them."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[at + offset:at + offset + 4] = size.to_bytes(4, "little")
            at += 4
    path.write_bytes(bytes(data))


def archive_cases(folder: Path) -> dict[str, Path]:
    cases = {}
    bomb = folder / "bomb.pth"  # a deflated data.pkl of 256 MiB of zeros: 0.25 MB on disk
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w") as member:
            block = bytes(1 << 20)
            for _ in range(256):
                member.write(block)
    cases["zip bomb"] = bomb
    declared = small_checkpoint(folder / "declared.pth")
    patch_sizes(declared, "declared/data/0", 3 << 30)
    cases["huge declared size"] = declared
    pickle_big = small_checkpoint(folder / "pickle.pth")
    patch_sizes(pickle_big, "pickle/data.pkl", 1 << 30)
    cases["huge declared pickle"] = pickle_big
    many = folder / "many.pth"
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(MAX_ENTRIES + 1):
            archive.writestr(f"many/data/{index}", b"")
    cases["too many entries"] = many
    whole = small_checkpoint(folder / "whole.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(whole[:len(whole) // 2])
    cases["truncated"] = folder / "truncated.pth"
    (folder / "text.pth").write_text("not a checkpoint\n" * 100)
    cases["not a zip: text"] = folder / "text.pth"
    (folder / "random.pth").write_bytes(np.random.default_rng(0).bytes(1 << 16))
    cases["not a zip: random bytes"] = folder / "random.pth"
    torch.save([torch.zeros(3)], folder / "list.pth")
    cases["wrong content: a list"] = folder / "list.pth"
    cases["wrong content: not MDHR"] = small_checkpoint(folder / "notmdhr.pth")
    legacy = folder / "legacy.pth"
    with open(legacy, "wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_CHECKPOINT_BYTES + 1)
    cases["legacy format beyond the bound"] = legacy
    return cases


def test_every_damaged_or_hostile_checkpoint_is_refused_in_one_line(tmp_path):
    cases = archive_cases(tmp_path)
    for name, path in cases.items():
        with pytest.raises(MDHRError) as refused:
            mdhr.load_model(path)
        refused_in_one_line(refused.value, str(path))
    CASES["checkpoint archives"] = len(cases)


@pytest.mark.parametrize("case", ["zip bomb", "huge declared size", "legacy format beyond the bound"])
def test_hostile_checkpoints_through_mdhr_export_exit_2_and_write_nothing(tmp_path, case):
    path = archive_cases(tmp_path)[case]
    out = tmp_path / "bundle"
    one_line_refusal(export_main, ["--ckpt", path, "--out", out], "refused to load")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".mdhr-" in p.name]


def test_a_zip_bomb_is_refused_at_the_memory_of_a_normal_start(tmp_path):
    """The refusal reads the archive's directory only: the process grows by
    no more than a few MB beyond what importing torch took."""
    bomb = archive_cases(tmp_path)["zip bomb"]
    script = ("import resource, sys, mdhr\n"
              "from mdhr.errors import MDHRError\n"
              "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n    mdhr.load_model(sys.argv[1])\nexcept MDHRError:\n    pass\n"
              "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, check=True)
    base, peak = map(int, done.stdout.split())
    assert peak - base < 32 * 1024, (base, peak)  # kB: under 32 MB


def test_a_real_training_checkpoint_fits_the_bounds(tmp_path):
    """The largest MDHR (BP4D, Swin-B) with Adam's two moments loads: the
    bounds refuse only what no MDHR checkpoint is."""
    with torch.device("meta"):
        largest = max((mdhr.MDHR(d, b) for d in ("BP4D", "DISFA") for b in mdhr.aus.BACKBONES),
                      key=lambda m: sum(t.numel() * t.element_size() for t in m.state_dict().values()))
    state_bytes = sum(t.numel() * t.element_size() for t in largest.state_dict().values())
    assert (largest.dataset, largest.backbone) == ("BP4D", "swin_transformer")
    assert state_bytes <= MAX_STATE_BYTES < state_bytes * 1.01
    model = mdhr.build_model("DISFA", "resnet")  # a real one, saved with optimizer moments, deflated too
    state = {"module." + k: v for k, v in model.state_dict().items()}
    moments = {i: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
               for i, p in enumerate(model.parameters())}
    path = tmp_path / "train.pth"
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": moments, "param_groups": []}}, path)
    assert set(read_state_dict(path)) == set(model.state_dict())


@pytest.fixture(scope="module", autouse=True)
def _report_cases():
    yield
    if CASES:
        print("\ncases per class:", json.dumps(CASES))
