"""The web tests other than the browser's collect and import without Playwright installed:
only the browser tests need it (it is a dev extra, not the web extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

#: Runs pytest's collection with ``import playwright`` failing, as if it were not installed.
COLLECT_WITHOUT_PLAYWRIGHT = """
import sys
sys.modules["playwright"] = None  # import playwright -> ModuleNotFoundError
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider",
                      "--ignore=tests/web/test_browser_recovery.py",
                      "--ignore=tests/web/test_browser.py", "tests/web"]))
"""


def test_web_tests_collect_without_playwright() -> None:
    """Every web test module but the browser ones (test_browser*.py) is collected with
    Playwright missing."""
    done = subprocess.run(
        [sys.executable, "-c", COLLECT_WITHOUT_PLAYWRIGHT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = done.stdout
    assert "tests/web/test_blueprint.py::" in collected
    assert "tests/web/test_browser" not in collected
    assert "error" not in collected.lower().split("collected")[-1]


def test_the_browser_tests_do_need_playwright() -> None:
    """The check above can fail: the browser tests themselves do not collect without it."""
    script = COLLECT_WITHOUT_PLAYWRIGHT.replace(
        '"--ignore=tests/web/test_browser.py", "tests/web"', '"tests/web/test_browser.py"'
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "playwright" in done.stdout
