"""The export bundle: a folder with ``mdhr.json`` (the model card) and the
artifacts it names.  Written by ``mdhr_export``, read here without torch."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mdhr.errors import BundleError
from mdhr_runtime.card import (
    ARTIFACT_KINDS,
    CARD_FILE,
    DEFAULT_TARGET,
    FORMAT,
    TARGET_ARTIFACTS,
    TARGETS,
    Card,
    CardError,
    plain_file_name,
)
from mdhr_runtime.files.atomic import write_atomically
from mdhr_runtime.integrity import external_data_locations, remember, remembered, sha256_of, verify_file

__all__ = ["ARTIFACT_KINDS", "CARD_FILE", "DEFAULT_TARGET", "FORMAT", "TARGET_ARTIFACTS", "TARGETS", "Bundle", "Card",
           "load_bundle", "seal", "write_card"]
GRAPH_KINDS = ("onnx", "onnx_fp16", "frame_stage", "clip_stage", "frame_batch", "clip_centre", "frame_stage_fp16", "clip_stage_fp16")
WEIGHTS_KINDS = ("weights", "weights_fp16")  # what a graph's external data may name
# A card is a few kB (tens with the export's reports); far more is no card.
CARD_LIMIT = 16 << 20


@dataclass(frozen=True)
class Bundle:
    root: Path
    card: Card
    _verified: set = field(default_factory=set, compare=False, repr=False)

    @property
    def dataset(self) -> str:
        return self.card.dataset

    @property
    def backbone(self) -> str:
        return self.card.backbone

    @property
    def au_names(self) -> list[str]:
        return list(self.card.au_names)

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.card.input.shape

    @property
    def batch(self) -> int:
        return self.card.input.batch

    @property
    def frames(self) -> int:
        return self.card.input.frames

    @property
    def mean(self) -> tuple[float, ...]:
        return self.card.input.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.card.input.std

    @property
    def untrained(self) -> bool:
        return self.card.untrained

    def artifact(self, kind: str) -> Path | None:
        """Path of an artifact, or None when the bundle has none (not yet
        verified: open files through ``verified``)."""
        found = self.card.artifacts.get(kind)
        return None if found is None else self.root / found.name

    def verified(self, kind: str) -> Path | None:
        """The artifact's path once it (and, for a graph, every file its
        external data names) is the file the card describes; None when the
        bundle has no such artifact.  Raises MDHRError naming the file."""
        path = self.artifact(kind)
        if path is None or kind in self._verified:
            return path
        artifact = self.card.artifacts[kind]
        verify_file(path, artifact.size, artifact.sha256)
        if kind in GRAPH_KINDS:
            for location in sorted(external_data_locations(path)):
                self._check_location(path, location)
        self._verified.add(kind)
        return path

    def _check_location(self, graph: Path, location: str) -> None:
        """An external-data location is one of this bundle's own artifacts."""
        try:
            plain_file_name(location, "location")
        except CardError:
            raise BundleError(f"{graph}: reads external data from {location[:80]!r}, outside the bundle; "
                              "export the bundle again") from None
        kind = next((k for k, a in self.card.artifacts.items() if a.name == location), None)
        if kind not in WEIGHTS_KINDS:
            raise BundleError(f"{graph}: reads external data from {location!r}, which the card does not name as a "
                              "weights file; export the bundle again")
        self.verified(kind)

    def export_hint(self, kind: str) -> str:
        """Which ``mdhr-export --target`` writes the artifact ``kind`` this
        bundle lacks, as the end of a one-line message."""
        target = next((t for t, kinds in TARGET_ARTIFACTS.items() if kind in kinds), DEFAULT_TARGET)
        return (f"this bundle was exported for target {self.card.target}; export it with "
                f"mdhr-export ... --target {target} (or all)" + (" --fp16" if target == "gpu" else ""))


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle folder (or its mdhr.json)."""
    root = Path(path)
    if root.name == CARD_FILE:
        root = root.parent
    card_path = root / CARD_FILE
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle folder; create one with mdhr-export")
    if not card_path.is_file():
        raise BundleError(f"{root}: not an MDHR bundle (no {CARD_FILE}); create one with mdhr-export")
    card = read_card(card_path)
    bundle = Bundle(root, card)
    graphs = [kind for kind in ("onnx", "onnx_fp16") if bundle.artifact(kind) is not None]
    missing = [card.artifacts[kind].name for kind in graphs if not bundle.artifact(kind).is_file()]
    if missing:
        raise BundleError(f"{root}: incomplete bundle: {', '.join(missing)} missing; export the bundle again")
    return bundle


def read_card(card_path: Path) -> Card:
    """The typed card of ``card_path``; one line naming what is wrong."""
    try:
        if os.path.getsize(card_path) > CARD_LIMIT:
            raise BundleError(f"{card_path}: {os.path.getsize(card_path)} bytes, far more than a model card; "
                              "export the bundle again")
        data = json.loads(card_path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise BundleError(f"{card_path}: damaged model card ({str(e)[:120] or type(e).__name__}); "
                          "export the bundle again") from None
    except OSError as e:
        raise BundleError(f"{card_path}: cannot read the model card ({e.strerror}); check the bundle") from None
    if isinstance(data, dict) and data.get("format") != FORMAT:
        raise BundleError(f"{card_path.parent}: bundle format {data.get('format')!r} is not supported by this runtime "
                          f"(expects {FORMAT}); export it again with the matching mdhr-toolkit version")
    try:
        return Card.from_json(data)
    except CardError as e:
        raise BundleError(f"{card_path}: damaged model card: {e.field} {e.problem}; export the bundle again") from None


def write_card(folder: str | Path, card: dict | Card, files: Mapping[str, str | None] | None = None) -> Card:
    """Save ``card`` as the folder's mdhr.json (atomically), sealed (see
    ``seal``); returns the card as written.  The export's one way to write a card."""
    typed = seal(folder, card, files)
    write_atomically(Path(folder) / CARD_FILE, (json.dumps(typed.to_json(), indent=2) + "\n").encode())
    return typed


def seal(folder: str | Path, card: dict | Card, files: Mapping[str, str | None] | None = None) -> Card:
    """``card`` naming ``files`` too (kind -> file name; None: the kind is
    gone) as a typed card with the size and sha256 of every artifact it
    names, as ``folder`` holds them now; raises CardError on a field the
    export got wrong."""
    folder = Path(folder)
    data = dict(card.to_json() if isinstance(card, Card) else card)
    data["artifacts"] = {**(data.get("artifacts") or {}), **(files or {})}
    data["artifact_bytes"], data["artifact_sha256"] = {}, {}
    previous = _previous_digests(folder)
    if isinstance(card, Card):  # a file unchanged since the card was sealed
        previous.update((a.name, a.sha256) for a in card.artifacts.values())
    for kind, name in data["artifacts"].items():
        if name is None:
            continue
        path = folder / plain_file_name(name, f"artifacts.{kind}")
        info = os.stat(path)
        digest = previous.get(name)
        if digest is None or not remembered(info, digest):
            digest = sha256_of(path)
            remember(path, digest, info)
        data["artifact_bytes"][kind], data["artifact_sha256"][kind] = info.st_size, digest
    return Card.from_json(data)


def _previous_digests(folder: Path) -> dict[str, str]:
    """File name -> sha256 in the card the folder holds now (to skip hashing
    a file unchanged since; checked against the verified-once record)."""
    try:
        data = json.loads((folder / CARD_FILE).read_bytes())
        return {data["artifacts"][kind]: digest for kind, digest in data["artifact_sha256"].items()
                if isinstance(digest, str) and isinstance(data["artifacts"].get(kind), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
