"""What the tests share: footage and bundle makers, golden outputs, refusal checks."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
DATA = TESTS / "data"  # copies of what the tests need from ../shared (read nothing outside the project)
ROOT = TESTS.parent
