"""Make demo/data/sample.mp4, the clip mdhr-demo scores.

It is honest footage of a real face: tests/data/face.jpg moved slowly over
a background cut from the same photo (tests.support.synthetic), with a short
stretch where the face leaves the frame, so the outputs show both.  H.264
in MP4 (PyAV's encoder), small enough to ship inside the package.

    python -m scripts.demo_sample tests/data/face.jpg demo/data/sample.mp4
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2

from tests.support.synthetic import FootageMaker, Segment

SIZE = (320, 240)
FPS = 30
SEGMENTS = (Segment("clean", 48, speed=0.5), Segment("empty", 12), Segment("clean", 30, speed=0.5))


def make_sample(photo_path: Path, out: Path) -> int:
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    frames = [f.rgb for f in FootageMaker(photo, size=SIZE).frames(SEGMENTS, fps=FPS)]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"crf": "23", "preset": "slow"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return len(frames)


if __name__ == "__main__":
    photo, target = map(Path, sys.argv[1:3])
    print(f"wrote {target}: {make_sample(photo, target)} frames")
