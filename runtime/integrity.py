"""What a bundle's files are, checked before any reader opens them.

Every artifact the card names must be a regular file of the bundle (not a
link) whose size and sha256 are the card's; every location an ONNX graph
reads external data from must be a plain file name that the card names as
an artifact too (so it is verified like the graph).  ONNX Runtime, OpenVINO,
TensorRT's parser, ``mdhr-triton`` and the parity tools therefore only ever
open files that are the export's own.

Hashing 0.37 GB of weights takes about a second, a large share of a
one-image run's start-up, so a file verified once is remembered: a record
in the user's cache keyed by the file's device, inode, size, modification
and change times (the change time cannot be set back by a writer) and the
expected hash.  Any write to the file changes the key, and the next run
hashes it again.  See docs/errors.md for what this trusts.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from mdhr.errors import BundleError

GRAPH_LIMIT = 2 << 30  # protobuf's own limit on a serialised model
_BLOCK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def records_folder() -> Path:
    """$MDHR_VERIFIED_CACHE, else $XDG_CACHE_HOME/mdhr-toolkit/verified, else ~/.cache/...."""
    named = os.environ.get("MDHR_VERIFIED_CACHE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mdhr-toolkit" / "verified"


def _record_name(info: os.stat_result, expected: str) -> str:
    key = f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{expected}"
    return hashlib.sha256(key.encode()).hexdigest()


def remember(path: Path, expected: str, info: os.stat_result | None = None) -> None:
    """Record that ``path``, as it is now, holds ``expected``.  A cache that
    cannot be written only costs the next run a hash."""
    try:
        info = info or os.stat(path)
        folder = records_folder()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=".record-")
        with os.fdopen(handle, "w") as out:
            out.write(expected + "\n")
        os.replace(name, folder / _record_name(info, expected))
    except OSError:
        pass


def remembered(info: os.stat_result, expected: str) -> bool:
    try:
        return (records_folder() / _record_name(info, expected)).read_text().strip() == expected
    except (OSError, UnicodeDecodeError):
        return False


def verify_file(path: Path, size: int, expected: str, remedy: str = "export the bundle again") -> None:
    """``path`` is a regular file (no link) of ``size`` bytes holding ``expected``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing from the bundle (its card names it); {remedy}") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot be read ({e.strerror}); {remedy}") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise BundleError(f"{path}: is {what}; a bundle holds its files itself; {remedy}")
    if info.st_size != size:
        raise BundleError(f"{path}: {info.st_size} bytes, the card says {size}: the file was changed or cut "
                          f"short; {remedy}")
    if remembered(info, expected):
        return
    try:
        found = sha256_of(path)
    except OSError as e:
        raise BundleError(f"{path}: cannot be read ({e.strerror}); {remedy}") from None
    if found != expected:
        raise BundleError(f"{path}: its content is not what the bundle was exported with (sha256 {found[:16]}..., "
                          f"the card says {expected[:16]}...); {remedy}")
    remember(path, expected, info)


# Which fields of ONNX's messages (onnx.proto) hold messages that can hold a
# tensor, and so a tensor's external-data location.  Everything else is skipped
# unread.  TensorProto.external_data (13) is a list of key/value entries.
_SCHEMA = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}


class _Malformed(Exception):
    pass


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Malformed
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: memoryview):
    """(field number, wire type, value) of one serialised message;
    length-delimited values as memoryviews."""
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, at = None, at + width
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at:at + length], at + length
        else:
            raise _Malformed
        if at > len(data):
            raise _Malformed
        yield number, wire, value


def _locations(data: memoryview, kind: str, found: set[str], depth: int = 0) -> None:
    if depth > 64:
        raise _Malformed
    children = _SCHEMA[kind]
    for number, wire, value in _fields(data):
        if wire != 2 or number not in children:
            continue
        child = children[number]
        if child == "entry":
            entry = {n: bytes(v) for n, w, v in _fields(value) if w == 2}
            if entry.get(1) == b"location":
                found.add(entry.get(2, b"").decode("utf-8", "replace"))
        else:
            _locations(value, child, found, depth + 1)


def external_data_locations(path: Path) -> set[str]:
    """Every external-data location an ONNX graph names (initializers,
    attributes, subgraphs, functions), read without the onnx package."""
    if os.path.getsize(path) > GRAPH_LIMIT:
        raise BundleError(f"{path}: larger than an ONNX model can be; export the bundle again")
    found: set[str] = set()
    try:
        _locations(memoryview(Path(path).read_bytes()), "model", found)
    except _Malformed:
        raise BundleError(f"{path}: not a readable ONNX model (damaged); export the bundle again") from None
    return found
