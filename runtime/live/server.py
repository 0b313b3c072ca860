"""The ``mdhr-live`` server (aiohttp, the ``live`` extra): the page, the
WebSocket that carries its camera's frames in and rows out, and the CSV of
the last session.

Routes (each refused with 403 without the token, ``guard.py``):
  ``/``             the page (``assets/``: HTML, script and style inlined: no other request)
  ``/ws``           the WebSocket; also refused from any other origin
  ``/session.csv``  the CSV of the last session stopped

One page drives the server at a time (a second WebSocket is refused as
busy); it may run any number of sessions (start, stop) in turn.  Messages
to the page are JSON: ``hello`` (AU names, threshold, options), ``rows``
(the rows made final by a frame, with frames/s and the stride), ``stopped``
(the CSV is ready), ``error``.  From the page: ``{"type": "start"}``,
``{"type": "stop"}`` and binary frames (``frames.py``)."""
from __future__ import annotations

import asyncio
import functools
import json
import shutil
import socket
import tempfile
import threading
from importlib import resources
from pathlib import Path

from mdhr.errors import InputError, param
from mdhr_runtime.live.frames import MAX_MESSAGE, BadFrame, parse_frame
from mdhr_runtime.live.guard import Guard
from mdhr_runtime.live.lsl import AUOutlet
from mdhr_runtime.live.session import LiveOptions, LiveSession

SECURITY_HEADERS = {
    # the token is in the URL: never sent on to anyone
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src blob: data:; media-src blob: mediastream:; connect-src 'self'; "
                               "frame-ancestors 'none'",
}


def aiohttp_web():
    """aiohttp's server (the live extra), imported when a server is made:
    the command still starts, and says which extra to install, without it."""
    from aiohttp import web

    return web


def page_html() -> str:
    """The page, its script and style inlined."""
    assets = resources.files("mdhr_runtime.live") / "assets"
    html = (assets / "live.html").read_text(encoding="utf-8")
    return (html.replace("/*LIVE_CSS*/", (assets / "live.css").read_text(encoding="utf-8"))
            .replace("/*LIVE_JS*/", (assets / "live.js").read_text(encoding="utf-8")))


class LiveServer:
    """Serve ``detector`` on ``host:port`` (0: a free port) from a thread of
    its own: ``start`` returns once listening; ``url`` is the page's address."""

    def __init__(self, detector, options: LiveOptions, host: str = "127.0.0.1", port: int = 0,
                 outlet: AUOutlet | None = None):
        self.web = aiohttp_web()
        self.detector, self.options, self.host = detector, options, host
        self.outlet = outlet  # every session's rows also go to this Lab Streaming Layer outlet
        self.guard = Guard.make(host)
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.folder: Path | None = None  # the sessions' CSV, made by start()
        self.session: LiveSession | None = None  # the current or last session
        self.busy = False  # a page is connected
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None  # aiohttp's AppRunner, once serving
        self._thread = threading.Thread(target=self._serve, name="mdhr-live-server", daemon=True)
        self._ready = threading.Event()
        self._page = page_html()
        self._sockets: set = set()  # the WebSockets open

    @property
    def url(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{name}:{self.port}/?token={self.guard.token}"

    @property
    def csv_path(self) -> Path:
        return self.folder / "session.csv"

    def start(self) -> "LiveServer":
        """Listening when it returns; interrupted (a signal), it leaves
        nothing: the serving thread's set-up (milliseconds) is let finish
        and the server closed."""
        try:
            self.folder = Path(tempfile.mkdtemp(prefix="mdhr-live-"))
            self._thread.start()
            self._ready.wait()
        except BaseException:
            if self._thread.is_alive():
                self._ready.wait(10)
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if self.session is not None:
            self.session.stop(timeout=30)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):  # a page still connected would hold the shutdown up
            await ws.close(message=b"server stopped")
        await self._runner.cleanup()

    # -- serving -------------------------------------------------------------

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        web = self.web

        @web.middleware
        async def guarded(request, handler):
            return await self._guarded(request, handler)

        app = web.Application(middlewares=[guarded])
        app.add_routes([web.get("/", self._index), web.get("/ws", self._socket),
                        web.get("/session.csv", self._csv)])
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, self.sock).start())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _guarded(self, request, handler):
        if not (self.guard.host_ok(request.headers.get("Host")) and self.guard.token_ok(request.query.get("token"))):
            return self.web.Response(status=403, text="forbidden: open the address mdhr-live printed (with its token)",
                                headers=SECURITY_HEADERS)
        response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _index(self, request):
        return self.web.Response(text=self._page, content_type="text/html", charset="utf-8")

    async def _csv(self, request):
        if not self.csv_path.is_file():
            return self.web.Response(status=404, text="no session has been stopped yet")
        return self.web.Response(body=self.csv_path.read_bytes(), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="mdhr-live.csv"'})

    async def _socket(self, request):
        web = self.web
        if not self.guard.origin_ok(request.headers.get("Origin"), request.headers.get("Host")):
            return web.Response(status=403, text="forbidden: frames are taken from this server's own page only")
        if self.busy:
            return web.Response(status=409, text="busy: another page is connected to this server")
        self.busy = True
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        outbox: asyncio.Queue = asyncio.Queue()
        sender = asyncio.create_task(_send_all(ws, outbox))
        send = functools.partial(self._send, outbox)
        try:
            send(self._hello())
            async for message in ws:
                await self._on_message(message, send)
        finally:
            self._sockets.discard(ws)
            self.busy = False
            if self.session is not None:
                self.session.slot.close()  # the page went away: end its session
            outbox.put_nowait(None)
            await sender
        return ws

    def _send(self, outbox: asyncio.Queue, message: dict) -> None:
        """Queue ``message`` for the page, from any thread; dropped once the
        server has stopped (a session's thread may still end after it)."""
        try:
            self._loop.call_soon_threadsafe(outbox.put_nowait, message)
        except RuntimeError:  # the event loop is closed: the page is gone
            pass

    async def _on_message(self, message, send) -> None:
        if message.type == self.web.WSMsgType.BINARY:
            if self.session is None or self.session.slot.closed:
                return
            try:
                self.session.put(parse_frame(message.data))
            except BadFrame as error:
                send({"type": "error", "message": f"frame refused: {error}"})
        elif message.type == self.web.WSMsgType.TEXT:
            try:
                kind = json.loads(message.data).get("type")
            except (ValueError, AttributeError):
                kind = None
            if kind == "start":
                await self._start(send)
            elif kind == "stop" and self.session is not None:
                self.session.slot.close()

    async def _start(self, send) -> None:
        if self.session is not None and not self.session.done.is_set():
            self.session.slot.close()
            await asyncio.get_running_loop().run_in_executor(None, self.session.done.wait)
        self.csv_path.unlink(missing_ok=True)
        self.session = await asyncio.get_running_loop().run_in_executor(
            None, LiveSession, self.detector, self.options, send, self.csv_path, self.outlet)
        send({"type": "started"})

    def _hello(self) -> dict:
        bundle = self.detector.bundle
        return {"type": "hello", "aus": list(bundle.au_names), "threshold": self.detector.threshold,
                "faces": self.options.faces, "windows": self.options.windows,
                "dataset": bundle.dataset, "untrained": bool(bundle.untrained)}


async def _send_all(ws, outbox: asyncio.Queue) -> None:
    """Messages to the page in order, until None."""
    while (message := await outbox.get()) is not None:
        if not ws.closed:
            await ws.send_str(json.dumps(message, allow_nan=False))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), or one line saying why not."""
    if not 0 <= port <= 65535:
        raise InputError(f"{param('port')} {port} is not a port number: give 1 to 65535, or 0 to have one chosen")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                         f"give another {param('port')} (or 0 to have one chosen) or {param('host')}") from None
