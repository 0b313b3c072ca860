"""Building MDHR and loading checkpoints trained with the official code."""
from __future__ import annotations

import io
import os
import pickletools
import struct
import zipfile
from collections.abc import Mapping

import torch

from mdhr.aus import AU_SETS, BACKBONES, au_set
from mdhr.errors import InputError, param
from mdhr.model import MDHR

# Keys present only in one backbone's state dict.
_BACKBONE_MARKERS = {
    "resnet": "Backbone.conv1.weight",
    "swin_transformer": "Backbone.patch_embed.proj.weight",
}
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# The largest MDHR state dict, BP4D with Swin-B: 588 tensors, 434,278,080
# bytes (tests/export/test_trust_card.py checks it against the model).  A training
# checkpoint may add Adam's two moments and a spare copy (an EMA): four times
# that bounds what a checkpoint can hold; more is refused before it is read.
MAX_STATE_BYTES = 435_000_000
MAX_CHECKPOINT_BYTES = 4 * MAX_STATE_BYTES
MAX_ENTRIES = 8 * 1024  # one per tensor (x4 as above), and a few records
MAX_PICKLE_BYTES = 64 << 20  # the pickle names tensors, it holds none
# Float tensors deflate to no less than about 80% of their size; a whole
# archive that inflates 20-fold is mostly one repeated byte: a zip bomb.
MAX_INFLATION = 20


def build_model(dataset: str = "BP4D", backbone: str = "resnet") -> MDHR:
    """MDHR with random initialisation, in eval mode; reads and downloads nothing."""
    au_set(dataset)  # validates the name
    if backbone not in BACKBONES:
        raise InputError(f"unknown {param('backbone')} {backbone!r}: choose one of {', '.join(BACKBONES)}")
    return MDHR(dataset, backbone).eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, whatever its official layout
    (bare, wrapped as {"state_dict": ...}, with DataParallel's ``module.``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such checkpoint file; check the path")
    check_archive(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways on foreign bytes (KeyError on text, ...)
        globals_named = [g for g in _pickled_globals(path) if not _plain_checkpoint_global(g)]
        if globals_named:
            raise InputError(
                f"{path}: refused to load: the checkpoint holds more than tensors and would run code "
                f"(it names {', '.join(globals_named[:3])}); re-save only the state_dict from a trusted "
                "environment") from None
        raise InputError(f"{path}: not a PyTorch checkpoint (torch.load cannot read it: {type(e).__name__}); "
                         "is the file complete and saved with torch.save?") from None
    state = _unwrap(obj, path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_archive(path: str) -> None:
    """Before anything is unpickled or inflated: the file and, for torch's
    zip format, what its archive declares (read from the central directory
    alone) fit an MDHR checkpoint.  Costs a few kB of reading."""
    size = os.path.getsize(path)
    refuse = f"{path}: refused to load: "
    if size > MAX_CHECKPOINT_BYTES:
        raise InputError(f"{refuse}{size / 1e9:.2f} GB, more than any MDHR checkpoint "
                         f"({MAX_CHECKPOINT_BYTES / 1e9:.2f} GB at most); check the file")
    directory = _central_directory(path)
    if directory is None:
        return  # not a zip archive: torch's legacy format, bounded by the file's size above
    entries, directory_bytes = directory
    if entries > MAX_ENTRIES or directory_bytes > MAX_ENTRIES * 1024:
        raise InputError(f"{refuse}its archive lists {entries} files, far more than an MDHR checkpoint's tensors; "
                         "check the file")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: not a PyTorch checkpoint (a damaged zip archive: {str(e)[:100]}); "
                         "is the file complete and saved with torch.save?") from None
    declared = sum(info.file_size for info in infos)
    stored = sum(info.compress_size for info in infos)
    pickled = max((info.file_size for info in infos if info.filename.endswith(".pkl")), default=0)
    if declared > MAX_CHECKPOINT_BYTES or pickled > MAX_PICKLE_BYTES:
        raise InputError(f"{refuse}its archive declares {declared / 1e9:.2f} GB of content, more than any MDHR "
                         f"checkpoint ({MAX_CHECKPOINT_BYTES / 1e9:.2f} GB at most); check the file")
    if declared > MAX_INFLATION * max(stored, 1) and declared > 1 << 20:
        raise InputError(f"{refuse}its archive inflates {declared / max(stored, 1):.0f}-fold, which tensors of "
                         "weights never do (a zip bomb?); check the file")


def _central_directory(path: str) -> tuple[int, int] | None:
    """(files listed, central directory bytes) from a zip's end record, or
    None when the file is no zip archive."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, end - (1 << 16) - 22))
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        entries, directory_bytes = struct.unpack("<HI", tail[at + 10:at + 16])
        locator = tail[at - 20:at] if at >= 20 else b""
        if locator[:4] == b"PK\x06\x07":  # zip64: the counts live in their own record
            (record,) = struct.unpack("<Q", locator[8:16])
            if record + 56 > end:
                return None
            handle.seek(record)
            zip64 = handle.read(56)
            if zip64[:4] != b"PK\x06\x06":
                return None
            entries, directory_bytes = struct.unpack("<QQ", zip64[32:48])
    return entries, directory_bytes


def _pickled_globals(path: str) -> list[str]:
    """The Python objects (module.name) a checkpoint's pickle would import,
    read without unpickling; empty when the file holds no well-formed pickle
    (text, random bytes, a truncated file).  Tells a checkpoint that carries
    code apart from a file that is no checkpoint at all."""
    try:
        if zipfile.is_zipfile(path):  # torch.save's format: <name>/data.pkl
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                streams = [archive.read(name)] if name else []
        else:  # the legacy format: magic number, protocol, system info, then the object
            with open(path, "rb") as handle:
                streams = [handle.read()]
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found = []
    for data in streams:
        stream = io.BytesIO(data)
        for _ in range(4):  # the legacy format's pickles, one after another
            start = stream.tell()
            if start >= len(data):
                break
            try:
                names = _globals_of_one_pickle(stream)
                stream.seek(start)
                pickletools.dis(stream, out=io.StringIO())  # checks the stack too: no accidental pickle
            except Exception:
                return []
            found += names
    return found


def _plain_checkpoint_global(name: str) -> bool:
    """Objects every state dict's pickle names (tensors, OrderedDict), which
    torch.load's weights-only mode allows."""
    return name.startswith("torch.") or name in ("collections.OrderedDict", "_codecs.encode")


def _globals_of_one_pickle(stream: io.BytesIO) -> list[str]:
    """Globals named by the pickle at the stream's position (GLOBAL, INST,
    and STACK_GLOBAL from the two strings pushed before it)."""
    names, strings, memo = [], [], {}
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in ("GLOBAL", "INST"):
            names.append(arg.replace(" ", "."))
        elif isinstance(arg, str) and "UNICODE" in opcode.name:
            strings.append(arg)
        elif opcode.name == "MEMOIZE" and strings:
            memo[len(memo)] = strings[-1]
        elif opcode.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
            memo[arg] = strings[-1]
        elif opcode.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
            strings.append(memo[arg])
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
    return names


def _unwrap(obj, path: str) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise InputError(f"{path}: no model state_dict found (expected a dict of tensors, or one under "
                     f"{', '.join(repr(k) for k in _WRAPPER_KEYS)})")


def infer_config(state: Mapping[str, torch.Tensor], path: str = "checkpoint") -> tuple[str, str]:
    """(dataset, backbone) that a state dict was trained for."""
    backbones = [name for name, key in _BACKBONE_MARKERS.items() if key in state]
    sc = state.get("node_classifier.sc")
    datasets = [name for name, s in AU_SETS.items() if sc is not None and sc.shape[0] == s.num_aus]
    if len(backbones) != 1 or len(datasets) != 1:
        raise InputError(f"{path}: does not look like an MDHR checkpoint (no recognisable backbone "
                         "or AU classifier keys)")
    return datasets[0], backbones[0]


def load_model(path: str | os.PathLike, dataset: str | None = None, backbone: str | None = None,
               device: str | torch.device = "cpu") -> MDHR:
    """Load an official MDHR checkpoint strictly and return the model in eval
    mode on ``device``.  ``dataset`` and ``backbone`` are inferred from the
    keys when not given, and checked against them when given."""
    path = os.fspath(path)
    state = read_state_dict(path)
    found_dataset, found_backbone = infer_config(state, path)
    if dataset is not None and dataset != found_dataset:
        au_set(dataset)
        n = AU_SETS[found_dataset].num_aus
        raise InputError(f"{path}: checkpoint has {n} AU classifiers ({found_dataset}), "
                         f"but {param('dataset')} {dataset} was asked")
    if backbone is not None and backbone != found_backbone:
        raise InputError(f"{path}: checkpoint was trained with backbone {found_backbone}, "
                         f"but {param('backbone')} {backbone} was asked")
    model = build_model(found_dataset, found_backbone)
    _check_keys(model, state, path)
    _check_finite(state, path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _check_finite(state: Mapping[str, torch.Tensor], path: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{path}: {len(bad)} tensors hold NaN or infinite values (first: {bad[0]}); "
                         "the checkpoint is damaged or training diverged")


def _check_keys(model: MDHR, state: Mapping[str, torch.Tensor], path: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
    if problems:
        raise InputError(f"{path}: does not match MDHR {model.dataset}/{model.backbone}: "
                         + "; ".join(problems))
