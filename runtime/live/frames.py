"""The camera frames a page sends: a 12-byte header (the page's frame
number, uint32, and its capture time in milliseconds, float64, both
little-endian) followed by a JPEG.  Messages are untrusted: the size is
bounded by the WebSocket, the JPEG's dimensions are read from its header
and bounded before it is decoded."""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from mdhr_runtime.sources.frames import to_rgb

HEADER = struct.Struct("<Id")
MAX_SIDE = 4096  # pixels: a camera frame's width or height, at most
MAX_MESSAGE = 8 * 1024 * 1024  # bytes: one frame message, at most
# start-of-frame markers carry the dimensions (not DHT C4, JPG C8, DAC CC)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadFrame(ValueError):
    """A frame message that is not one the page sends."""


@dataclass(frozen=True)
class SentFrame:
    number: int  # the page's frame number
    captured_ms: float  # the page's clock at capture
    jpeg: bytes


def parse_frame(message: bytes) -> SentFrame:
    if len(message) <= HEADER.size or len(message) > MAX_MESSAGE:
        raise BadFrame(f"a frame message of {len(message)} bytes")
    number, captured = HEADER.unpack_from(message)
    if not math.isfinite(captured) or captured < 0:
        raise BadFrame(f"capture time {captured}")
    jpeg = bytes(message[HEADER.size:])
    width, height = jpeg_size(jpeg)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise BadFrame(f"a {width}x{height} image (at most {MAX_SIDE} a side)")
    return SentFrame(number, captured, jpeg)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment, without decoding."""
    if data[:2] != b"\xff\xd8":
        raise BadFrame("not a JPEG")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise BadFrame("a damaged JPEG header")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if length < 2:
            raise BadFrame("a damaged JPEG header")
        if marker in SOF_MARKERS:
            if at + 9 > len(data):
                break
            height = int.from_bytes(data[at + 5:at + 7], "big")
            width = int.from_bytes(data[at + 7:at + 9], "big")
            return width, height
        at += 2 + length
    raise BadFrame("a JPEG without its size")


def decode_rgb(frame: SentFrame) -> np.ndarray | None:
    """The frame's RGB pixels; None when the JPEG does not decode, or decodes
    to another size than its header said."""
    image = cv2.imdecode(np.frombuffer(frame.jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[1::-1] != jpeg_size(frame.jpeg):
        return None
    return to_rgb(image)
