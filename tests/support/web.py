"""A person at a browser, played with Flask's test client: reads each page's form, posts it."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import requests
from flask import Flask, request, session
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.web import mfa_blueprint

PREFIX = "/login"
#: The test application's own sign-in: any user id, this password (the app's first factor).
APP_PASSWORD = "app-password"


def make_app(engine: Engine | SealedEngine, **options: Any) -> Flask:
    """A Flask app with the login blueprint under /login, and a sign-in page of its own
    (``POST /app/signin``) that checks :data:`APP_PASSWORD`, makes a new session for the
    user and begins their second factor, as the README tells an application to."""
    app = Flask(__name__)
    app.secret_key = "test-secret-key-of-enough-length-0123456789"
    app.config["TESTING"] = True
    options.setdefault("current_user", lambda: session.get("user"))
    bp = mfa_blueprint(engine, **options)
    app.register_blueprint(bp, url_prefix=PREFIX)

    @app.post("/app/signin")
    def signin() -> Response | tuple[str, int]:
        if request.form.get("password") != APP_PASSWORD:
            return "wrong password", 401
        session.clear()
        session["user"] = request.form["user"]
        return bp.begin(request.form.get("provider") or None)

    return app


def flow_csrf(body: str) -> str | None:
    """The CSRF token of a page's forms: the first one not in a form that begins a new flow
    (``/begin``: the failure page's "Try again", whose token is the start page's); ``None``
    when the page has no other form (the client keeps the token it had, as a browser keeps
    the older page)."""
    for form in body.split("<form")[1:]:
        action = re.match(r'[^>]*action="([^"]*)"', form)
        if action and action.group(1).endswith("/begin"):
            continue
        found = re.search(r'name="(?:csrf_token|csrfmiddlewaretoken)" value="([^"]+)"', form)
        if found:
            return found.group(1)
    return None


class Visitor:
    """One browser profile: cookies kept by the test client, the CSRF token read from pages."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""
        self.flow_url = ""
        self.bodies: list[str] = []

    def _seen(self, response: TestResponse) -> TestResponse:
        body = response.get_data(as_text=True)
        self.bodies.append(body)
        found = flow_csrf(body)
        if found:
            self.csrf = found
        return response

    def get(self, url: str) -> TestResponse:
        return self._seen(self.client.get(url))

    def post(self, url: str, **form: Any) -> TestResponse:
        form.setdefault("csrf_token", self.csrf)
        return self._seen(self.client.post(url, data=form))

    def start(
        self,
        provider: str,
        user: str,
        password: str = "any-password",  # noqa: S107 - a fixture
    ) -> TestResponse:
        """The start page's typed form: a user id and the password the IdP checks."""
        self.get(f"{PREFIX}/")
        response = self.post(f"{PREFIX}/", provider=provider, user=user, password=password)
        if response.status_code == 303:
            self.flow_url = response.headers["Location"]
            self.page()  # the flow's forms carry a CSRF token bound to it
        return response

    def begin(self, provider: str, user: str) -> TestResponse:
        """Sign in to the application itself, which then begins the user's second factor."""
        response = self.client.post(
            "/app/signin", data={"user": user, "password": APP_PASSWORD, "provider": provider}
        )
        self._seen(response)
        if response.status_code == 303:
            self.flow_url = response.headers["Location"]
            self.page()
        return response

    def page(self) -> TestResponse:
        return self.get(self.flow_url)

    def step(self, step: str, **form: Any) -> TestResponse:
        return self.post(f"{self.flow_url}/{step}", **form)

    def poll_json(self, csrf: str | None = None) -> TestResponse:
        headers = {
            "Accept": "application/json",
            "X-CSRF-Token": self.csrf if csrf is None else csrf,
        }
        return self._seen(self.client.post(f"{self.flow_url}/poll", headers=headers))


FLOW_COOKIE = "__Host-mfa_fsm_flow_"
CSRF_COOKIE = "__Host-mfa_fsm_csrf"


def flow_cookie(visitor: Visitor, prefix: str = FLOW_COOKIE) -> str:
    """The name of the cookie of the visitor's current flow (one per flow handle)."""
    return prefix + visitor.flow_url.rsplit("/", 1)[1]


def heading(response: TestResponse) -> str:
    """The text of the page's <h1>."""
    found = re.search(r"<h1[^>]*>(.*?)</h1>", response.get_data(as_text=True), re.S)
    assert found, response.get_data(as_text=True)[:500]
    return re.sub(r"\s+", " ", found.group(1)).strip()


def state(response: TestResponse) -> str:
    """The state the page renders (the main element's data-state)."""
    found = re.search(r'data-state="([A-Za-z]+)"', response.get_data(as_text=True))
    assert found
    return found.group(1)


def set_cookies(response: TestResponse, name: str) -> list[str]:
    """The Set-Cookie headers of ``response`` for cookie ``name``."""
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Client:
    """A browser over real HTTP (requests): cookies kept, each page's CSRF token read back.

    Every request has a timeout, so an attack test is bounded in time as well as in count.
    """

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.csrf = ""
        self.flow_url = ""

    def request(self, method: str, path: str, **form: Any) -> requests.Response:
        data = form or None
        reply = self.session.request(
            method, self.base + path, data=data, timeout=10, allow_redirects=False
        )
        found = flow_csrf(reply.text)
        if found:
            self.csrf = found
        return reply

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, **form: Any) -> requests.Response:
        form.setdefault("csrf_token", self.csrf)
        return self.request("POST", path, **form)

    def start(self, provider: str, user: str, password: str) -> requests.Response:
        self.get(f"{PREFIX}/")
        reply = self.post(f"{PREFIX}/", provider=provider, user=user, password=password)
        self._follow(reply)
        return reply

    def begin(self, provider: str, user: str) -> requests.Response:
        reply = self.request(
            "POST", "/app/signin", user=user, password=APP_PASSWORD, provider=provider
        )
        self._follow(reply)
        return reply

    def step(self, step: str, **form: Any) -> requests.Response:
        reply = self.post(f"{self.flow_url}/{step}", **form)
        if reply.status_code == 303:
            self.get(self.flow_url)
        return reply

    def _follow(self, reply: requests.Response) -> None:
        if reply.status_code == 303:
            self.flow_url = reply.headers["Location"].removeprefix(self.base)
            self.get(self.flow_url)
