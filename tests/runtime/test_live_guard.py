"""Who may drive mdhr-live (runtime/live/guard.py) and what a frame message
may be (runtime/live/frames.py): every class of bad input, generated."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr_runtime.live.frames import HEADER, MAX_SIDE, BadFrame, decode_rgb, jpeg_size, parse_frame
from mdhr_runtime.live.guard import Guard

HOST = "127.0.0.1:8765"
LOOPBACK = Guard.make("127.0.0.1")
WIDE = Guard.make("0.0.0.0")


def jpeg(width=64, height=48) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def message(body: bytes, number=3, captured=12.5) -> bytes:
    return HEADER.pack(number, captured) + body


@given(st.text(max_size=40))
def test_only_the_token_itself_is_accepted(given_token):
    assert LOOPBACK.token_ok(given_token) == (given_token == LOOPBACK.token)
    assert LOOPBACK.token_ok(LOOPBACK.token) and not LOOPBACK.token_ok(None)
    assert LOOPBACK.token != WIDE.token and len(LOOPBACK.token) >= 24


@given(st.sampled_from(["http", "https", "ws", "file", ""]), st.sampled_from(["127.0.0.1", "localhost", "evil.example",
       "127.0.0.1.evil.example", "[::1]", "null"]), st.sampled_from([":8765", ":8766", "", ":80"]))
def test_the_websocket_takes_only_its_own_pages_origin(scheme, host, port):
    origin = f"{scheme}://{host}{port}" if scheme else f"{host}{port}"
    assert LOOPBACK.origin_ok(origin, HOST) == (origin == f"http://{HOST}")
    assert not LOOPBACK.origin_ok(None, HOST) and not LOOPBACK.origin_ok(origin, None)


@given(st.sampled_from(["evil.example", "127.0.0.1.evil.example", "192.168.1.5", "localhost.", ""]),
       st.sampled_from([":8765", ""]))
def test_a_loopback_server_answers_only_to_loopback_names(name, port):
    """A name rebound to 127.0.0.1 (DNS rebinding) is refused even with its own origin."""
    assert not LOOPBACK.host_ok(name + port)
    assert not LOOPBACK.origin_ok(f"http://{name}{port}", name + port)
    for good in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765"):
        assert LOOPBACK.host_ok(good) and LOOPBACK.origin_ok(f"http://{good}", good)


def test_a_server_bound_beyond_loopback_takes_any_host_name_but_still_the_token():
    assert WIDE.host_ok("192.168.1.5:8765") and WIDE.origin_ok("http://192.168.1.5:8765", "192.168.1.5:8765")
    assert not WIDE.origin_ok("http://evil.example:8765", "192.168.1.5:8765")
    assert not WIDE.token_ok("") and not WIDE.token_ok(WIDE.token[:-1])


def test_a_good_frame_is_parsed_and_decoded():
    frame = parse_frame(message(jpeg(64, 48)))
    assert (frame.number, frame.captured_ms) == (3, 12.5)
    assert decode_rgb(frame).shape == (48, 64, 3)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_frame_or_refused_in_one_error(data):
    try:
        frame = parse_frame(data)
    except BadFrame:
        return
    rgb = decode_rgb(frame)
    assert rgb is None or max(rgb.shape[:2]) <= MAX_SIDE


@settings(max_examples=100)
@given(st.integers(0, len(jpeg()) - 1), st.integers(0, 255))
def test_a_damaged_jpeg_is_refused_or_decodes_to_its_declared_size(at, value):
    body = bytearray(jpeg())
    body[at] = value
    try:
        frame = parse_frame(message(bytes(body)))
    except BadFrame:
        return
    rgb = decode_rgb(frame)
    width, height = jpeg_size(frame.jpeg)
    assert rgb is None or rgb.shape[:2] == (height, width) and max(width, height) <= MAX_SIDE


@pytest.mark.parametrize("width,height", [(MAX_SIDE + 1, 10), (10, MAX_SIDE + 1), (65535, 65535), (0, 10)])
def test_a_jpeg_declaring_a_huge_or_empty_picture_is_refused_before_decoding(width, height):
    body = bytearray(jpeg())
    sof = body.index(b"\xff\xc0")
    body[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    with pytest.raises(BadFrame, match="a side"):
        parse_frame(message(bytes(body)))


@pytest.mark.parametrize("captured", [float("nan"), float("inf"), -1.0])
def test_a_capture_time_that_is_not_a_time_is_refused(captured):
    with pytest.raises(BadFrame, match="capture time"):
        parse_frame(message(jpeg(), captured=captured))


@pytest.mark.parametrize("data", [b"", HEADER.pack(1, 1.0), message(b"GIF89a..."), message(b"\xff\xd8\xff\xd9")])
def test_truncated_or_foreign_messages_are_refused(data):
    with pytest.raises(BadFrame):
        parse_frame(data)
