import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.support import DATA, ROOT


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    """This machine has 2 cores; more threads only add contention."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def photo():
    """tests/data/face.jpg, a real face photo, as RGB."""
    import cv2

    return cv2.cvtColor(cv2.imread(str(DATA / "face.jpg")), cv2.COLOR_BGR2RGB)


# Daily work may reuse exported bundles across sessions: with
# MDHR_TEST_BUNDLE_CACHE=DIR each bundle is exported once per version of the
# exporting code (mdhr/, export/, the card) and shared read-only. CI never sets it.
_EXPORTING_CODE = ("mdhr", "export", "runtime/bundle.py", "runtime/card", "runtime/card.py", "runtime/integrity.py")


def _exporting_code_digest() -> str:
    root = ROOT
    digest = hashlib.sha256()
    for entry in _EXPORTING_CODE:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _exported(tmp_path_factory, name: str, make) -> Path:
    """make(folder) exports into folder/"bundle"; cached when the environment asks."""
    cache = os.environ.get("MDHR_TEST_BUNDLE_CACHE")
    if not cache:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder / "bundle"
    root = Path(cache)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}-{_exporting_code_digest()}"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "bundle" / "mdhr.json").exists():
            staging = root / f".{target.name}.staging"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            make(staging)
            staging.rename(target)
    return target / "bundle"


@pytest.fixture(scope="session")
def bp4d_bundle(tmp_path_factory):
    """BP4D/ResNet-50 bundle (batch 1, T 16, with FP16) exported from a
    checkpoint holding the golden recipe's weights."""
    from tests.support.bundles import export, golden_checkpoint

    def make(folder):
        ckpt = golden_checkpoint(folder)
        export(["--ckpt", str(ckpt), "--out", str(folder / "bundle"), "--fp16"])

    return _exported(tmp_path_factory, "bp4d", make)


@pytest.fixture(scope="session")
def disfa_model_bundle(tmp_path_factory):
    """Untrained DISFA/ResNet-50 bundle with 4-frame clips (the short-clip
    extension): the cheapest export of the full model, for the tests whose
    answer depends on the model itself (the slow tier)."""
    from tests.support.bundles import export

    def make(folder):
        export(["--random-init", "--dataset", "DISFA", "--backbone", "resnet", "--frames", "4",
                "--out", str(folder / "bundle")])

    return _exported(tmp_path_factory, "disfa", make)


@pytest.fixture(scope="session")
def disfa_short_bundle(tmp_path_factory):
    """A DISFA bundle with 4-frame clips whose graphs are tiny stand-ins with
    the bundle's contract (tests/support/tiny_bundle.py), built in a fraction
    of a second: the fast tier's bundle for everything the runtime does
    around the model (windows, faces, tables, outputs, commands, reports).
    Tests whose answer depends on the real model take ``disfa_model_bundle``."""
    from tests.support.tiny_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture(scope="module")
def detector(disfa_short_bundle):
    """An ONNX Runtime AUDetector on the tiny DISFA 4-frame bundle, one per module."""
    from mdhr_runtime.detector import AUDetector

    with AUDetector(disfa_short_bundle, backend="onnxruntime") as d:
        yield d


@pytest.fixture(scope="module")
def model_detector(disfa_model_bundle):
    """An ONNX Runtime AUDetector on the exported DISFA 4-frame model, one per module."""
    from mdhr_runtime.detector import AUDetector

    with AUDetector(disfa_model_bundle, backend="onnxruntime") as d:
        yield d


@pytest.fixture(scope="session")
def face_avi(tmp_path_factory, photo):
    """24 frames of a face, MJPG in AVI (a container that declares its frame
    count and still decodes when cut short)."""
    from tests.support.synthetic import FootageMaker, Segment, write_video

    frames = [f.rgb for f in FootageMaker(photo, size=(320, 240)).frames([Segment("clean", 24, speed=0.5)])]
    path = tmp_path_factory.mktemp("video") / "face.avi"
    write_video(path, frames, codec="MJPG")
    return path


EXPORTED_BUNDLES = ("bp4d_bundle", "disfa_model_bundle")


def pytest_collection_modifyitems(session, config, items):
    """Tests on an exported full model are the slow tier (``-m "not slow"`` leaves them out)."""
    for item in items:
        if set(EXPORTED_BUNDLES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    _exports_first(items)


def _exports_first(items):
    """The first test of each exported bundle runs first: its export (a
    child process of gigabytes) then happens while this process is still
    small, which keeps the run's total memory low."""
    first = [next((item for item in items if name in getattr(item, "fixturenames", ())), None)
             for name in EXPORTED_BUNDLES]
    first = [item for item in dict.fromkeys(first) if item is not None]
    items[:] = first + [item for item in items if item not in first]
