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
