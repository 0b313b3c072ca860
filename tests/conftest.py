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


@pytest.fixture(scope="session")
def bp4d_bundle(tmp_path_factory):
    """BP4D/ResNet-50 bundle (batch 1, T 16, with FP16) exported from a
    checkpoint holding the golden recipe's weights."""
    from bundles import export, golden_checkpoint

    folder = tmp_path_factory.mktemp("bp4d")
    ckpt = golden_checkpoint(folder)
    out = folder / "bundle"
    export(["--ckpt", str(ckpt), "--out", str(out), "--fp16"])
    return out


@pytest.fixture(scope="session")
def disfa_short_bundle(tmp_path_factory):
    """Untrained DISFA/ResNet-50 bundle with 4-frame clips (the short-clip
    extension): the cheapest real bundle, for runtime and benchmark tests."""
    from bundles import export

    out = tmp_path_factory.mktemp("disfa") / "bundle"
    export(["--random-init", "--dataset", "DISFA", "--backbone", "resnet", "--frames", "4", "--out", str(out)])
    return out


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
