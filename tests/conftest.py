import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

# tests/golden.py and friends are plain modules beside the tests
sys.path.insert(0, str(Path(__file__).parent))


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

    return cv2.cvtColor(cv2.imread(str(Path(__file__).parent / "data" / "face.jpg")), cv2.COLOR_BGR2RGB)


# Daily work may reuse exported bundles across sessions: with
# MDHR_TEST_BUNDLE_CACHE=DIR each bundle is exported once per version of the
# exporting code (mdhr/, export/, the card) and shared read-only. CI never sets it.
_EXPORTING_CODE = ("mdhr", "export", "runtime/bundle.py", "runtime/card", "runtime/card.py", "runtime/integrity.py")


def _exporting_code_digest() -> str:
    root = Path(__file__).parent.parent
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
    from bundles import export, golden_checkpoint

    def make(folder):
        ckpt = golden_checkpoint(folder)
        export(["--ckpt", str(ckpt), "--out", str(folder / "bundle"), "--fp16"])

    return _exported(tmp_path_factory, "bp4d", make)


@pytest.fixture(scope="session")
def disfa_short_bundle(tmp_path_factory):
    """Untrained DISFA/ResNet-50 bundle with 4-frame clips (the short-clip
    extension): the cheapest real bundle, for runtime and benchmark tests."""
    from bundles import export

    def make(folder):
        export(["--random-init", "--dataset", "DISFA", "--backbone", "resnet", "--frames", "4",
                "--out", str(folder / "bundle")])

    return _exported(tmp_path_factory, "disfa", make)


@pytest.fixture(scope="module")
def detector(disfa_short_bundle):
    """An ONNX Runtime AUDetector on the DISFA 4-frame bundle, one per module."""
    from mdhr_runtime.detector import AUDetector

    with AUDetector(disfa_short_bundle, backend="onnxruntime") as d:
        yield d


@pytest.fixture(scope="session")
def face_avi(tmp_path_factory, photo):
    """24 frames of a face, MJPG in AVI (a container that declares its frame
    count and still decodes when cut short)."""
    from mdhr_bench.synthetic import FootageMaker, Segment, write_video

    frames = [f.rgb for f in FootageMaker(photo, size=(320, 240)).frames([Segment("clean", 24, speed=0.5)])]
    path = tmp_path_factory.mktemp("video") / "face.avi"
    write_video(path, frames, codec="MJPG")
    return path


EXPORTED_BUNDLES = ("bp4d_bundle", "disfa_short_bundle")


def pytest_collection_modifyitems(session, config, items):
    """The first test of each exported bundle runs first: its export (a
    child process of gigabytes) then happens while this process is still
    small, which keeps the run's total memory low."""
    first = [next((item for item in items if name in getattr(item, "fixturenames", ())), None)
             for name in EXPORTED_BUNDLES]
    first = [item for item in dict.fromkeys(first) if item is not None]
    items[:] = first + [item for item in items if item not in first]
