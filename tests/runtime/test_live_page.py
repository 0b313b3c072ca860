"""mdhr-live in a real browser: Debian's Chromium, headless, its camera
replaced by a video made from the test face; and the server's guard over
real HTTP and WebSocket connections (runtime/live/)."""
from __future__ import annotations

import asyncio
import csv
import http.client
import http.server
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.live.server import LiveServer
from mdhr_runtime.live.session import LiveOptions
from tests.support.browser import chromium, fake_camera_flags, have_chromium
from tests.support.footage import write_y4m
from tests.support.synthetic import FootageMaker, Segment

CENTRED = LiveOptions("centred", None, "largest", DEFAULT_MIN_FACE)


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory, photo):
    """4 s of the test face moving (15 frames/s), Chromium's fake camera (looped)."""
    frames = [f.rgb for f in FootageMaker(photo, size=(640, 360)).frames((Segment("moving", 60),), fps=15)]
    return write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m", frames, fps=15)


@pytest.fixture(scope="module")
def browser(camera_file):
    if not have_chromium():
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    with chromium(fake_camera_flags(camera_file)) as b:
        yield b


def wait_until(page, expression: str, timeout: float) -> None:
    """Poll ``expression`` in the page (the page's CSP forbids the eval
    behind Playwright's wait_for_function)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {expression}; page says "
                                 f"{page.evaluate('window.mdhrLive && window.mdhrLive.text')}")
        time.sleep(0.25)


def get(url: str, host: str | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                       headers={"Host": host} if host else {})
    response = connection.getresponse()
    return response.status, response.read()


def websocket_status(url: str, origin: str | None) -> int | str:
    """The handshake's HTTP status, or "open" (then the first message's type)."""
    import aiohttp

    async def attempt():
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, origin=origin) as ws:
                    return "open: " + (await ws.receive_json(timeout=30))["type"]
            except aiohttp.WSServerHandshakeError as error:
                return error.status
    return asyncio.run(attempt())


def ws_url(server: LiveServer, token: str | None = "same") -> str:
    token = server.guard.token if token == "same" else token
    return f"ws://127.0.0.1:{server.port}/ws" + ("" if token is None else f"?token={token}")


def test_every_request_needs_the_token_the_host_and_the_websocket_its_own_origin(detector):
    with LiveServer(detector, CENTRED) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.sock.getsockname()[0] == "127.0.0.1"
        status, page = get(server.url)
        assert status == 200 and b"mdhr-live" in page and b"<script" in page and b"src=" not in page
        base = f"http://127.0.0.1:{server.port}"
        for path in ("/", "/?token=", f"/?token={server.guard.token[:-1]}", "/session.csv", "/ws"):
            assert get(base + path)[0] == 403, path
        assert get(server.url, host=f"evil.example:{server.port}")[0] == 403  # a name rebound to 127.0.0.1
        own = f"http://127.0.0.1:{server.port}"
        assert websocket_status(ws_url(server), own) == "open: hello"
        for origin in (None, "http://evil.example", f"http://localhost:{server.port + 1}", "null",
                       f"https://127.0.0.1:{server.port}"):
            assert websocket_status(ws_url(server), origin) == 403, origin
        assert websocket_status(ws_url(server, None), own) == 403
        assert websocket_status(ws_url(server, "guess"), own) == 403


def test_bound_beyond_localhost_it_still_needs_the_token(detector):
    with LiveServer(detector, CENTRED, host="0.0.0.0") as server:
        assert server.sock.getsockname()[0] == "0.0.0.0" and f"token={server.guard.token}" in server.url
        local = f"http://127.0.0.1:{server.port}/?token={server.guard.token}"
        assert get(local, host=f"192.0.2.7:{server.port}")[0] == 200  # any name of the machine, with the token
        assert get(f"http://127.0.0.1:{server.port}/", host=f"192.0.2.7:{server.port}")[0] == 403
        assert websocket_status(ws_url(server), "http://evil.example") == 403


def read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(data.decode().splitlines()))


def test_the_page_scores_the_camera_live_and_its_csv_is_the_servers_table(detector, browser, tmp_path):
    """Start: rows arrive, the face is found, the bars move, latency is
    measured; Stop: the CSV downloaded from the page is, byte for byte, the
    server's table written by FrameTable.write_csv."""
    with LiveServer(detector, CENTRED) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        wait_until(page, "window.mdhrLive && window.mdhrLive.hello !== null", timeout=30)
        page.click("#start")
        wait_until(page, "window.mdhrLive.rowsReceived >= 4", timeout=300)
        first = bar_widths(page)
        wait_until(page, "window.mdhrLive.rowsReceived >= 12 && window.mdhrLive.scoreChanges >= 3", timeout=300)
        assert bar_widths(page) != first, "the bars did not move"
        live = page.evaluate("({faces: [...window.mdhrLive.faces], latencies: window.mdhrLive.latencies, "
                             "rows: window.mdhrLive.rows, sent: window.mdhrLive.framesSent})")
        assert live["faces"] == [0]
        assert sum(r["success"] for r in live["rows"]) >= 0.8 * len(live["rows"])
        assert len(live["latencies"]) >= 8 and all(0 < ms < 120_000 for ms in live["latencies"])
        page.click("#stop")
        wait_until(page, "window.mdhrLive.csvReady", timeout=120)
        with page.expect_download() as download:
            page.click("#download")
        downloaded = Path(download.value.path()).read_bytes()
        own = server.session.table.write_csv(tmp_path / "server.csv").read_bytes()
        assert downloaded == own
        received = page.evaluate("window.mdhrLive.rowsReceived")
        page.screenshot(path=str(tmp_path / "live.png"))
        page.close()
    rows = read_csv(downloaded)
    assert len(rows) == received and list(rows[0])[:4] == ["frame", "timestamp", "success", "confidence"]
    assert [int(r["frame"]) for r in rows] == list(range(1, len(rows) + 1))
    times = np.array([float(r["timestamp"]) for r in rows])
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)  # the page's capture times
    assert all(r["AU01_score"] for r in rows if r["success"] == "1")
    assert not errors, errors


def bar_widths(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('.bar .fill')].map(e => e.style.width)")


def test_a_page_from_another_origin_cannot_drive_the_camera_server(detector, browser, tmp_path):
    """A page served from another local port (another origin), even one that
    knows the token, gets no WebSocket."""
    with LiveServer(detector, CENTRED) as server:
        (tmp_path / "index.html").write_text(f"""<!doctype html><script>
          window.result = "pending";
          const ws = new WebSocket("{ws_url(server)}");
          ws.onopen = () => {{ window.result = "open"; }};
          ws.onerror = () => {{ window.result = "refused"; }};
        </script>""")
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
        with socketserver.TCPServer(("127.0.0.1", 0), handler) as other:
            threading.Thread(target=other.serve_forever, daemon=True).start()
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{other.server_address[1]}/index.html")
            wait_until(page, "window.result !== 'pending'", timeout=30)
            assert page.evaluate("window.result") == "refused"
            page.close()
            other.shutdown()
        assert server.session is None and not server.busy


def test_mdhr_live_prints_its_address_serves_the_page_and_stops_on_ctrl_c(disfa_short_bundle):
    command = Path(sys.executable).with_name("mdhr-live")
    process = subprocess.Popen([str(command), "--model", str(disfa_short_bundle), "--backend", "onnxruntime"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        status, page = get(url)
        assert status == 200 and b"mdhr-live" in page
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--port", "70000"], "not a port number"),
    (["--threshold", "3"], "outside [-1, 1]"),
    (["--hop", "0"], "hop"),
])
def test_bad_options_get_one_line_and_exit_2(disfa_short_bundle, args, message):
    from click.testing import CliRunner

    from mdhr_runtime.cli.live_page import main

    result = CliRunner().invoke(main, ["--model", str(disfa_short_bundle), *args])
    assert result.exit_code == 2 and result.output.startswith("error:") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_port_in_use_is_refused_in_one_line(disfa_short_bundle):
    import socket

    from click.testing import CliRunner

    from mdhr_runtime.cli.live_page import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--model", str(disfa_short_bundle), "--port", str(port)])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output


def test_a_missing_bundle_is_refused_before_anything_listens(tmp_path):
    from click.testing import CliRunner

    from mdhr_runtime.cli.live_page import main

    result = CliRunner().invoke(main, ["--model", str(tmp_path / "none")])
    assert result.exit_code == 2 and result.output.startswith("error:")


def send_one_by_one(session, frames: list[np.ndarray]) -> None:
    """Each RGB frame as the page sends it (a JPEG frame message, captured
    10 s after the one before), put once the session took the one before."""
    import cv2

    from mdhr_runtime.live.frames import HEADER, parse_frame

    for k, rgb in enumerate(frames):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        assert session.put(parse_frame(HEADER.pack(k, 10_000.0 * (k + 1)) + jpeg))
        deadline = time.monotonic() + 120
        while session.paced.count <= k:
            assert time.monotonic() < deadline, f"frame {k} was not taken"
            time.sleep(0.05)


def test_a_session_with_faces_all_scores_every_face_with_its_id(detector, photo, tmp_path):
    """The session's code path with several faces: two people side by side,
    sent as the page sends them (JPEG frame messages), captured 10 s apart
    so that the model keeps up with every one (each is put once the last
    was taken); rows and the CSV carry both face ids."""
    from mdhr_runtime.live.session import LiveSession
    from tests.support.crowd import CrowdMaker, side_by_side

    made = CrowdMaker(photo, 2, (320, 180)).frames(side_by_side(2, size=(320, 180)), 6)
    messages = []
    session = LiveSession(detector, LiveOptions("centred", None, "all", DEFAULT_MIN_FACE),
                          messages.append, tmp_path / "session.csv")
    send_one_by_one(session, [frame.rgb for frame in made])
    assert session.stop(timeout=300) and session.error is None
    rows = [row for m in messages if m["type"] == "rows" for row in m["rows"]]
    assert len({r["face_id"] for r in rows if r["success"]}) == 2
    assert len(rows) == len(session.table) == 12 and messages[-1]["type"] == "stopped"
    table = read_csv((tmp_path / "session.csv").read_bytes())
    assert list(table[0])[:3] == ["frame", "face_id", "timestamp"]
    assert [r["timestamp"] for r in table][::2] == [f"{10.0 * k:.3f}" for k in range(6)]


def test_with_lsl_every_row_is_a_sample_on_the_lab_streaming_layer(detector, photo, tmp_path):
    """--lsl: a real outlet, resolved and read by a real inlet on this
    machine: one sample per row, face_id then the AU scores the page got."""
    pylsl = pytest.importorskip("pylsl")

    from mdhr_runtime.live.lsl import AUOutlet
    from mdhr_runtime.live.session import LiveSession
    from tests.support.synthetic import FootageMaker, Segment

    outlet = AUOutlet(detector.bundle.au_names)
    found = pylsl.resolve_byprop("source_id", outlet.source_id, timeout=10)
    assert found and found[0].channel_count() == 1 + len(detector.bundle.au_names)
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    messages = []
    session = LiveSession(detector, CENTRED, messages.append, tmp_path / "session.csv", outlet)
    send_one_by_one(session, [made.rgb for made in FootageMaker(photo, size=(320, 240)).frames((Segment("clean", 5),))])
    assert session.stop(timeout=120) and session.error is None
    rows = [row for m in messages if m["type"] == "rows" for row in m["rows"]]
    samples, stamps = [], []
    deadline = time.monotonic() + 30
    while len(samples) < len(rows) and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=1.0)
        samples += chunk
        stamps += times
    assert len(rows) == 5 and len(samples) == len(rows)
    for row, sample in zip(rows, samples):
        assert sample[0] == -1
        if row["scores"] is None:
            assert all(np.isnan(sample[1:]))
        else:
            assert np.allclose(sample[1:], row["scores"], atol=1e-4)
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))
    inlet.close_stream()
