"""Fixtures of the web tests: the demo on loopback (on each web framework), and one Debian
Chromium per package.

The browser is Debian's ``chromium`` (``scripts/setup.sh`` installs it with apt-get), driven
by Playwright through its executable path: Playwright's own browser downloads are never used.
A missing chromium fails the browser tests; it never skips them. Playwright is imported only
by the browser fixtures, so every other web test collects and runs without it
(tests/web/test_without_playwright.py checks that).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mfa_fsm.core.throttle import Throttle
from mfa_fsm.web.demo import Demo
from tests.support.web_apps import FRAMEWORKS, LiveApp

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("MFA_FSM_CHROMIUM", "/usr/bin/chromium")
#: Headless on a machine with no network but loopback: without the background-networking
#: flags Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

Shot = Callable[["Page", str], None]


@pytest.fixture(scope="session", params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    """The web framework the browser tests run on: each test runs once per framework
    (its id ends in ``[flask]``, ``[fastapi]`` or ``[django]``; ``-k django`` picks one)."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def demo(framework: str) -> Iterator[Demo]:
    """The demo's shape (the emulators, the app, SQLite in a temporary directory) on
    loopback, served by ``framework``'s test app (tests/support/web_apps).

    Its throttles keep the default rates but for the send cooldown: the tests click from one
    push to the next faster than people (tests/web/test_attacks.py checks the defaults)."""
    with LiveApp(framework, throttle=Throttle(send_cooldown="10/second")) as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the web tests. Closed after them, not at the end of
    the session: Playwright's sync API keeps an event loop running in the main thread while
    it is open, and asyncio.run (the README's async example) refuses to start inside one."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `bash scripts/setup.sh` (it runs "
            "`apt-get install chromium`), or set MFA_FSM_CHROMIUM to its path",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415 - browser tests only

    # A push is polled once a second; give a page a few polls to follow it.
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) for one test."""
    made = browser.new_context(viewport={"width": 1280, "height": 900})
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """One tab of the test's browser profile."""
    return context.new_page()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """Save a full-page screenshot to artifacts/screenshots/<test>-<n>-<label>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"^test_", "", request.node.name)
    taken = [0]

    def take(page: Page, label: str) -> None:
        taken[0] += 1
        page.screenshot(path=SCREENSHOTS / f"{test}-{taken[0]:02d}-{label}.png", full_page=True)

    return take
