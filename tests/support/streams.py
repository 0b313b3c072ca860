"""A real network camera for tests: an MJPEG stream over HTTP (what IP
cameras serve), at a set frame rate, which OpenCV's FFmpeg opens by URL."""
from __future__ import annotations

import http.server
import socketserver
import threading
import time
from contextlib import contextmanager

import cv2


@contextmanager
def mjpeg_stream(frames, fps: float):
    """Serve ``frames`` (RGB) once, at ``fps``, to each client; yields the URL."""
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes() for rgb in frames]

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start = time.monotonic()
            try:
                for k, jpeg in enumerate(jpegs):
                    time.sleep(max(0.0, start + k / fps - time.monotonic()))  # on the camera's clock
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                     + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/camera.mjpg"
    finally:
        server.shutdown()
        server.server_close()
