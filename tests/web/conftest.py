"""Fixtures of the web tests: the demo on loopback (on each web framework), and one Debian
Chromium per package.

The browser is Debian's ``chromium`` (``scripts/setup.sh`` installs it with apt-get), driven
by Playwright through its executable path: Playwright's own browser downloads are never used.
A missing chromium fails the browser tests; it never skips them. Playwright is imported only
by the browser fixtures, so every other web test collects and runs without it
(tests/web/test_without_playwright.py checks that).

Every page a test takes a screenshot of (the ``shot`` fixture) is first checked with axe-core
(the ``axe-playwright-python`` package bundles it): any violation fails the test. The
screenshots, at a phone's width (390 px) and a desktop's (1280 px), go to
``artifacts/screenshots/`` (gitignored; ``MFA_FSM_SCREENSHOTS`` names another directory; CI
keeps it as the run's artifact).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from mfa_fsm.core.throttle import Throttle
from mfa_fsm.web.demo import Demo
from tests.support.web_apps import FRAMEWORKS, LiveApp

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = Path(os.environ.get("MFA_FSM_SCREENSHOTS") or ROOT / "artifacts" / "screenshots")
#: The widths every page is photographed at: a phone (iPhone 12 to 15, CSS pixels), a desktop.
WIDTHS = (390, 1280)
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


class Shot(Protocol):
    """``shot(page, label)``; ``scripts=False`` for a page whose context runs no scripts."""

    def __call__(self, page: Page, label: str, *, scripts: bool = True) -> None: ...


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


def axe_violations(page: Page, *, scripts: bool = True) -> list[str]:
    """axe-core's violations on ``page`` as it is now, one line each (rule, impact, the
    elements); empty when there is none. Every rule axe-core runs by default (WCAG 2.x A
    and AA, and its best practices).

    ``scripts=False``: ``page``'s context runs no scripts, axe-core included, so its DOM as it
    is now is served at the same URL to a tab of a scripted context of the same browser (the
    stylesheets load from the application as before), and checked there."""
    from axe_playwright_python.sync_playwright import Axe  # noqa: PLC0415 - browser tests only

    if scripts:
        results = Axe().run(page)
    else:
        assert page.context.browser is not None
        html, url = page.content(), page.url
        size = page.viewport_size
        twin = page.context.browser.new_context(java_script_enabled=True, viewport=size)
        try:
            copy = twin.new_page()
            copy.route(url, lambda route: route.fulfill(body=html, content_type="text/html"))
            # The page's own scripts must not run in the copy: it shows the no-script DOM.
            copy.route("**/*.js", lambda route: route.abort())
            copy.goto(url)
            results = Axe().run(copy)
        finally:
            twin.close()
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"])
        for v in results.response["violations"]
    ]


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """Check the page with axe-core (any violation fails the test), then save full-page
    screenshots at each of WIDTHS to SCREENSHOTS/<test>-<n>-<label>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^\w.-]+", "-", re.sub(r"^test_", "", request.node.name)).strip("-")
    taken = [0]

    def take(page: Page, label: str, *, scripts: bool = True) -> None:
        taken[0] += 1
        found = axe_violations(page, scripts=scripts)
        assert not found, f"axe-core on {page.url} ({label}):\n" + "\n".join(found)
        size = page.viewport_size or {"width": 1280, "height": 900}
        try:
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": size["height"]})
                name = f"{test}-{taken[0]:02d}-{label}-{width}.png"
                page.screenshot(path=SCREENSHOTS / name, full_page=True)
        finally:
            page.set_viewport_size(size)

    return take
