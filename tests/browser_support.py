"""Headless Chromium for the browser tests: find it, launch it offline, watch a page.

The browser is Debian's ``chromium`` (``make test`` installs it where it can), driven by
Playwright's Python package with ``executable_path``; Playwright's own browser downloads are
never used. Every launch gets a fresh temporary profile (Playwright creates one per
``launch``), and the flags keep Chromium from phoning home on a machine without network.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field

CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--mute-audio"]
LOCAL_SCHEMES = ("file:", "data:")


def find_chromium() -> str | None:
    """``$GRADPROBE_CHROMIUM``, else the first Chromium-family browser on ``PATH``."""
    given = os.environ.get("GRADPROBE_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class PageLog:
    """What a page did while it was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def route(self, route) -> None:
        """Let local files and data URIs through; abort (and remember) anything else."""
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def external(self) -> list[str]:
        return [u for u in self.requests + self.blocked if not u.startswith(LOCAL_SCHEMES)]


@contextmanager
def open_page(browser, url: str, *, width: int = 1280, height: int = 900):
    """A fresh context and page at ``url``, with console, error, request and dialog logs.
    Yields ``(page, log)``."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    log = PageLog()
    context.route("**/*", log.route)
    context.on("request", lambda request: log.requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error"
            else None)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.on("dialog", lambda dialog: (log.dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(url, wait_until="load")
        yield page, log
    finally:
        context.close()
