"""The real console in a real browser, for the journey tests.

`console_server`: the app (`api.http.app.create_app`) on a copy of the API
test home (tests/api_fixtures.py: 4 wearers x 3 days detected, one user per
role), served by uvicorn on a free 127.0.0.1 port in a thread, lifespan and
all. `browser`: the distribution's Chromium (Debian ``chromium``) driven by
Playwright through `executable_path` (Playwright's own browser download is
not used). `page`: a fresh context whose every request to a host other than
127.0.0.1 is aborted and recorded; at teardown none may have been tried, and
no Content-Security-Policy violation may have been reported.

Chromium or Playwright missing: the test fails when CI is set, and is skipped
otherwise (`pg_server.missing_part`).
"""
from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api_fixtures import ApiEnv, close_env, copy_env
from pg_server import missing_part

__all__ = ["ConsoleServer", "console_server", "browser", "page", "CHROMIUM_ARGS", "chromium_path", "sign_in",
           "screenshot", "SCREENSHOTS"]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LOOPBACK = "127.0.0.1"
#: Where the journeys leave the screenshots the README shows (committed; each test run retakes them).
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: The window the screenshots are taken in (a laptop's, GOV.UK's widest layout).
VIEWPORT = {"width": 1280, "height": 900}
#: The most of a page a screenshot keeps (a record's fix table can run to thousands of rows).
SHOT_MAX_HEIGHT = 2400


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class ConsoleServer:
    env: ApiEnv
    url: str
    blocked: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture()
def console_server(api_template, tmp_path):
    import uvicorn

    env = copy_env(api_template, tmp_path / "home")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(env.app, host=LOOPBACK, port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the console did not start on {LOOPBACK}:{port}")
        time.sleep(0.05)
    try:
        yield ConsoleServer(env=env, url=f"http://{LOOPBACK}:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        close_env(env)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an
    event loop running in the thread while it is open, and later tests in the same worker
    that call asyncio.run (tests/test_http_guard.py) would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_part(f"playwright is not installed ({exc}): pip install -e .[test]")
    path = chromium_path()
    if not Path(path).exists():
        missing_part(f"no Chromium at {path}: apt-get install -y chromium")
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - any launch failure means the part is missing
            missing_part(f"Chromium at {path} did not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, console_server):
    """A page in a fresh context: no request may leave 127.0.0.1, and no CSP violation may be reported."""
    context = browser.new_context(base_url=console_server.url, viewport=VIEWPORT)
    violations: list[str] = []

    def only_loopback(route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == LOOPBACK:
            route.continue_()
        else:
            console_server.blocked.append(url)
            route.abort()

    context.route("**/*", only_loopback)
    p = context.new_page()
    p.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield p
    context.close()
    assert console_server.blocked == [], f"requests left 127.0.0.1: {console_server.blocked}"
    assert violations == [], f"Content-Security-Policy violations: {violations}"


def sign_in(page, server: ConsoleServer, who: str, next_path: str = "/queue") -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"/login?next={next_path}")
    page.fill("#token", server.env.tokens[who])
    page.click("button:has-text('Sign in')")
    page.wait_for_load_state()


def screenshot(page, name: str) -> Path:
    """The page (its first `SHOT_MAX_HEIGHT` pixels: long tables are cut) as docs/screenshots/`name`.png
    for the README, once it has stopped moving."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.wait_for_load_state("networkidle")
    height = min(int(page.evaluate("document.documentElement.scrollHeight")), SHOT_MAX_HEIGHT)
    page.screenshot(path=str(path), full_page=True, caret="initial",  # "hide" injects a style the CSP refuses
                    clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    return path
