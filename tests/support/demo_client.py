"""A person using the running demo over HTTP, as a browser would: the demo application's
sign-in, the login pages' forms (with their CSRF tokens and cookies), and the emulator
control page playing the phone. Only ``requests`` and the pages' HTML: it works against a
demo in this process or in another virtual environment."""

from __future__ import annotations

import contextlib
import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.support.servers import free_port

#: The form's CSRF field: the web core's own, or Django's (its middleware checks it).
CSRF = re.compile(r'name="(csrf_token|csrfmiddlewaretoken)" value="([^"]+)"')
CONTROL_TOKEN = re.compile(r'data-control-token="([^"]+)"')
STATE = re.compile(r'data-state="([A-Za-z]+)"')


def field(pattern: re.Pattern[str], page: str, what: str) -> str:
    found = pattern.search(page)
    assert found, f"no {what} on the page:\n{page[:2000]}"
    return html.unescape(found.group(1))


def csrf(page: str) -> dict[str, str]:
    """The page form's CSRF field, as form data."""
    found = CSRF.search(page)
    assert found, f"no CSRF token on the page:\n{page[:2000]}"
    return {found.group(1): html.unescape(found.group(2))}


def state_of(page: str) -> str:
    return field(STATE, page, "data-state")


class DemoUserAgent:
    """One browser session on the demo at ``base`` (``http://127.0.0.1:PORT/``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.flow_url = ""
        self.page = ""

    def sign_in(self, user: str, password: str) -> str:
        """The demo application's own sign-in (an EXTERNAL first factor); the flow's state."""
        form = self.session.get(self.base + "signin", timeout=10).text
        reply = self.session.post(
            self.base + "signin",
            data={"user": user, "password": password, **csrf(form)},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text[:2000]
        self.flow_url, self.page = reply.url, reply.text
        return state_of(self.page)

    def start(self, provider: str, user: str, password: str) -> str:
        """The login start page's typed form (a first factor the IdP checks); the state."""
        form = self.session.get(self.base + "login/", timeout=10).text
        reply = self.session.post(
            self.base + "login/",
            data={"provider": provider, "user": user, "password": password, **csrf(form)},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text[:2000]
        self.flow_url, self.page = reply.url, reply.text
        return state_of(self.page)

    def step(self, name: str, **data: str) -> str:
        """POST the flow's ``name`` route (factor, response, poll...) with the page's token."""
        reply = self.session.post(
            f"{self.flow_url}/{name}",
            data={**data, **csrf(self.page)},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text[:2000]
        self.page = reply.text
        return state_of(self.page)

    def poll_until_settled(self, seconds: float = 20) -> str:
        """Press "Check now" until the push is answered; the page's state then."""
        state = state_of(self.page)
        deadline = time.monotonic() + seconds
        while state == "OobPending" and time.monotonic() < deadline:
            time.sleep(0.2)
            state = self.step("poll")
        return state

    def control_page(self) -> str:
        """The emulator control page (the user's phone), as it shows now."""
        reply = self.session.get(self.base + "emulator", timeout=10)
        assert reply.status_code == 200
        return reply.text

    def on_phone(self, provider: str, user: str, action: str, **data: str) -> str:
        """Press a button of the control page (approve, deny, a number); the page after."""
        token = field(CONTROL_TOKEN, self.control_page(), "control token")
        reply = self.session.post(
            f"{self.base}emulator/{provider}/{user}/{action}",
            data={"token": token, **data},
            timeout=10,
        )
        assert reply.status_code == 200
        return reply.text

    def numbers_offered(self, user: str) -> list[str]:
        """The numbers the control page offers for ``user``'s push with number matching."""
        page = self.control_page()
        row = page[page.index(f'<p class="emulator-who"><code>{user}</code>') :]
        row = row[: row.index("</li>")]
        return re.findall(r'name="number" value="(\d+)"', row)

    def code_sent(self, user: str) -> str:
        """The last code the control page shows as sent to ``user``."""
        found = re.search(rf'data-code-for="{user}">(\d+)<', self.control_page())
        assert found, f"no code shown for {user}"
        return found.group(1)


@contextlib.contextmanager
def demo_process(*arguments: str) -> Iterator[str]:
    """``mfa-fsm demo ARGUMENTS`` in a process of its own on a free loopback port (Django's
    settings are global to a process); yields its URL once it printed it and serves it;
    stops it with SIGTERM, which must end it cleanly (exit 0)."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("mfa-fsm")), "demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    url = f"http://127.0.0.1:{port}/"
    printed: list[str] = []
    try:
        for line in process.stdout:  # the demo prints its URL once it serves it
            printed.append(line)
            if f"open {url} in a browser" in line:
                break
        else:
            raise AssertionError("the demo ended before serving:\n" + "".join(printed)[-3000:])
        assert requests.get(url + "signin", timeout=10).status_code == 200
        yield url
    finally:
        process.terminate()
        output = "".join(printed) + process.communicate(timeout=30)[0]
        assert process.returncode == 0, output[-3000:]
