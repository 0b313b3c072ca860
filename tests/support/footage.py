"""Test videos made from the real face photo (tests/data/face.jpg)."""
from __future__ import annotations

from pathlib import Path

from tests.support.synthetic import FootageMaker, write_video


def face_video(path: Path, photo, segments) -> tuple[Path, list[bool]]:
    """Write the footage of ``segments`` to ``path``; the video and, per
    frame, whether a face is in it."""
    made = list(FootageMaker(photo).frames(segments))
    write_video(path, [f.rgb for f in made])
    return path, [f.truth is not None for f in made]


def crowd_video(path: Path, photo, count: int, script, frames: int, size=(640, 360)) -> tuple[Path, list]:
    """Write ``frames`` frames of ``count`` people placed by ``script``
    (``tests.support.crowd``); the video and, per frame, each person's face
    box (None where absent)."""
    from tests.support.crowd import CrowdMaker

    made = list(CrowdMaker(photo, count, size).frames(script, frames))
    write_video(path, [f.rgb for f in made])
    return path, [f.truths for f in made]
