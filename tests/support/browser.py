"""A real headless Chromium (Debian's package, driven by Playwright, from the
test extra) that opens reports from disk and records console errors and
every request: for the report tests and the report figures."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright adds --headless and a fresh --user-data-dir; these keep
# Chromium itself quiet on the network (no updates, sync or probes).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
LOCAL_SCHEMES = ("file:", "data:", "blob:")


def have_chromium() -> bool:
    return Path(CHROMIUM).exists()


@dataclass
class OpenedPage:
    page: object
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    load_seconds: float = 0.0

    @property
    def remote_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_report(browser, path: Path, width: int = 1280, height: int = 900,
                ready: str | None = "window.mdhrReport !== undefined") -> OpenedPage:
    """Load ``path`` in a new page and wait until ``ready`` holds (the
    report's script has run); remote requests are recorded and refused."""
    page = browser.new_page(viewport={"width": width, "height": height})
    opened = OpenedPage(page)
    page.on("console", lambda message: message.type == "error" and opened.console_errors.append(message.text))
    page.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    page.on("request", lambda request: opened.requests.append(request.url))
    page.route(lambda url: not url.startswith(LOCAL_SCHEMES), lambda route: route.abort())
    start = time.perf_counter()
    page.goto(Path(path).absolute().as_uri(), wait_until="load")
    if ready:
        page.wait_for_function(ready)
    opened.load_seconds = time.perf_counter() - start
    return opened
