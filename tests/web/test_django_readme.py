"""The README's Django project ("A complete app, Django"), run as written: ``python
mysite.py runserver --noreload`` in a subprocess, then a login through it over real HTTP: the
project's own sign-in, the second factor on the pages, on_complete's session and redirect."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.web.conftest import ROOT


def readme_project() -> str:
    """The README's ``mysite.py``: the first Python block of its Django section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### A complete app, Django\n", 1)[1]
    found = re.search(r"```python\n(# mysite\.py\n.*?)```", section, re.S)
    assert found, "the README's Django section has no mysite.py block"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def mysite(tmp_path: Path) -> Iterator[str]:
    """The README's project served by Django's runserver; yields its base URL."""
    (tmp_path / "mysite.py").write_text(readme_project(), encoding="utf-8")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "mysite.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/", timeout=2)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"the README's Django project did not start:\n{output}")
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def hidden(body: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', body)
    assert found, body[:800]
    return found.group(1)


def test_the_readme_django_project_signs_in(mysite: str) -> None:
    browser = requests.Session()
    home = browser.get(mysite + "/", timeout=10)
    token = hidden(home.text, "csrfmiddlewaretoken")
    wrong = browser.post(
        mysite + "/signin",
        data={"csrfmiddlewaretoken": token, "user": "jsmith", "password": "wrong"},
        timeout=10,
    )
    assert wrong.status_code == 401
    begun = browser.post(
        mysite + "/signin",
        data={"csrfmiddlewaretoken": token, "user": "jsmith", "password": "demo"},
        timeout=10,
        allow_redirects=False,
    )
    assert begun.status_code == 303, begun.text[:800]
    flow = mysite + begun.headers["Location"]
    assert flow.startswith(mysite + "/login/f/")
    picker = browser.get(flow, timeout=10)
    assert "Choose a second factor" in picker.text
    assert "First factor: jsmith, checked by this app&#39;s password check." in picker.text
    csrf = hidden(picker.text, "(?:csrfmiddlewaretoken|csrf_token)")
    picked = browser.post(
        flow + "/factor",
        data={"factor": "TOKEN", "csrfmiddlewaretoken": csrf},
        timeout=10,
        allow_redirects=False,
    )
    assert picked.status_code == 303
    code_page = browser.get(flow, timeout=10)
    assert "Enter your code" in code_page.text
    done = browser.post(
        flow + "/response",
        data={"response": DEMO_TOKEN_CODE, "csrfmiddlewaretoken": csrf},
        timeout=10,
        allow_redirects=False,
    )
    assert done.status_code == 302, done.text[:800]
    assert done.headers["Location"] == "/"
    assert browser.get(mysite + "/", timeout=10).text == "Signed in as jsmith"
