"""Who may drive a live server: the holder of its URL, from its own page.

Every request must carry the server's random token (``?token=``), so a
page elsewhere (or another user of the machine, or a name rebound to this
address) cannot reach it; the WebSocket that carries the camera's frames
also refuses any ``Origin`` but the page's own.  Loopback servers answer
only to loopback names in ``Host`` (no DNS rebinding)."""
from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``Host``'s name and port ("[::1]:8080" -> ("::1", 8080)); port None when absent or not a number."""
    parts = urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


@dataclass(frozen=True)
class Guard:
    token: str
    loopback: bool  # bound to a loopback address: Host must name one

    @classmethod
    def make(cls, host: str) -> "Guard":
        return cls(secrets.token_urlsafe(18), is_loopback(host))

    def token_ok(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name, _ = split_host(host_header)
        return bool(name) and (not self.loopback or name in LOOPBACK_NAMES)

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """The WebSocket's ``Origin`` is the page this server served: http
        on the very host and port the request was sent to."""
        return origin is not None and host_header is not None and self.host_ok(host_header) \
            and origin.lower() == f"http://{host_header.lower()}"
