"""Real encoded videos of the kinds users bring, made with PyAV (FFmpeg's
libraries): H.264 with B-frames, an MP4 whose edit list hides priming
samples, variable frame rates, Matroska (no frame count), a display
rotation, an index at the front (faststart) or the end, and cuts."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np

from tests.support.synthetic import write_h264


def h264(path: Path, frames: Sequence[np.ndarray], times_ms: Sequence[int] | None = None, rotation: int = 0,
         faststart: bool = False) -> Path:
    """``tests.support.synthetic.write_h264``, returning the path."""
    write_h264(path, frames, times_ms, rotation=rotation, faststart=faststart)
    return path


def with_edit_list(source: Path, path: Path, hidden: int) -> Path:
    """Remux an MP4 with its first ``hidden`` frames moved before time 0: the
    MP4 muxer writes an edit list that hides them (the samples stay in the
    file, so the container counts them; players and decoders skip them)."""
    with av.open(str(source)) as given, av.open(str(path), "w") as out:
        video = given.streams.video[0]
        stream = out.add_stream_from_template(video)
        packets = [p for p in given.demux(video) if p.dts is not None]
        step = sorted({b.pts - a.pts for a, b in zip(sorted(packets, key=lambda p: p.pts),
                                                      sorted(packets, key=lambda p: p.pts)[1:])})[0]
        for packet in packets:
            packet.pts -= hidden * step
            packet.dts -= hidden * step
            packet.stream = stream
            out.mux(packet)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC track and nothing else (a voice memo given as a video)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        samples = int(48000 * seconds)
        tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def cut(source: Path, path: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes, as an interrupted copy
    or a recording stopped by a dead battery leaves it."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def damaged(source: Path, path: Path, at: float = 0.5, length: int = 3000) -> Path:
    """``source`` with ``length`` bytes of noise written over the middle (a
    bad sector or a broken transfer): the file is whole but not its data."""
    data = bytearray(source.read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def moving_bar(n: int, width: int = 160, height: int = 96) -> list[np.ndarray]:
    """Frames with a bar whose place gives the frame's index, and a patch of
    fresh noise each (so every frame costs bytes, as camera noise does, and a
    cut by bytes is a cut in time)."""
    noise = np.random.default_rng(0)
    frames = []
    for i in range(n):
        rgb = np.full((height, width, 3), 40, np.uint8)
        rgb[height // 2:, : width // 2] = noise.integers(0, 256, (height - height // 2, width // 2, 3))
        rgb[:, (i * 5) % width] = 255
        frames.append(rgb)
    return frames
