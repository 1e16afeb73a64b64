"""The demo application's own pages, framework-neutral, for the test apps of every framework.

The browser suite runs the demo's shape on Flask, FastAPI and Django: the application's own
sign-in page (``/signin``, an EXTERNAL first factor it checks itself), its home (``/``, who is
signed in), and the emulator control page (``/emulator``, the user's phone). What differs per
framework is only the glue: its session, its CSRF, its redirects. This module holds the rest
once: the password check, the control page's actions, and rendering the demo's templates with
plain Jinja2 (``url_for`` here maps the Flask endpoint names the templates use to paths).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

import mfa_fsm.web
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.testing.demo_idps import DemoIdp
from mfa_fsm.web import events
from mfa_fsm.web.core import STATIC_PATH
from mfa_fsm.web.demo import DEMO_CHECKED_BY

#: Where the login pages are mounted in every test app.
LOGIN = "/login"
NOT_ACCEPTED = "The user id or password was not accepted."
FORM_EXPIRED = "The form has expired; please sign in again."

_PATHS = {
    "signin": "/signin",
    "signin_post": "/signin",
    "home": "/",
    "emulator": "/emulator",
    "mfa_fsm.start_page": f"{LOGIN}/",
}


def url_for(endpoint: str, **values: str) -> str:
    """The path of one of the demo templates' Flask endpoint names, in every test app."""
    if endpoint == "mfa_fsm.static":
        return f"{LOGIN}{STATIC_PATH}/{values['filename']}"
    if endpoint == "emulator_act":
        return f"/emulator/{values['provider']}/{values['user']}/{values['action']}"
    return _PATHS[endpoint]


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(mfa_fsm.web.__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.globals["url_for"] = url_for


def render(name: str, **context: Any) -> str:
    """Render one of the demo's templates (``mfa_fsm/demo/<name>``)."""
    return _TEMPLATES.get_template(f"mfa_fsm/demo/{name}").render(**context)


def current_user(user: object) -> VerifiedUser | None:
    """The user the demo's sign-in page checked, from the value the app keeps in its session."""
    return VerifiedUser(user, checked_by=DEMO_CHECKED_BY) if isinstance(user, str) else None


def signed_in(view: FlowView) -> dict[str, str]:
    """What ``on_complete`` keeps in the application's new session: whom the IdP confirmed."""
    result = view.result
    assert result is not None  # on_complete sees a Completed view
    return {
        "user": result.user_id,
        "name": result.display_name or result.user_id,
        "provider": events.provider_label(view.provider),
    }


class DemoPages:
    """The demo application's pages over running emulators (provider name -> its DemoIdp)."""

    def __init__(self, idps: Mapping[str, DemoIdp]) -> None:
        self.idps = idps
        #: user -> (their IdP's provider name, the demo application's password)
        self.passwords = {
            user: (name, password)
            for name, idp in idps.items()
            for user, password in idp.app_passwords.items()
        }
        # One token per run in the control page's forms: a cross-site page cannot read it.
        self.control_token = secrets.token_urlsafe(32)

    def signin_page(self, csrf_token: str, error: str | None = None) -> str:
        users = [(user, self.passwords[user][1]) for user in sorted(self.passwords)]
        return render(
            "signin.html",
            users=users,
            error=error,
            checked_by=DEMO_CHECKED_BY,
            login_url=url_for("mfa_fsm.start_page"),
            csrf_token=csrf_token,
        )

    def check_password(self, user: str, password: str) -> str | None:
        """The provider of ``user`` if ``password`` is their demo application password."""
        provider, expected = self.passwords.get(user, (None, None))
        # Compared in constant time, as any application's password check should be.
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return None
        return provider

    def home_page(self, signed_in: Mapping[str, str]) -> str:
        return render("home.html", signed_in=signed_in, login_url=url_for("mfa_fsm.start_page"))

    def control_page(self, done: str) -> str:
        rows = [
            (demo, idp.last_code(demo.user)) for idp in self.idps.values() for demo in idp.users
        ]
        numbers = {
            (demo.provider, demo.user): number
            for idp in self.idps.values()
            for demo in idp.users
            if (number := idp.number_shown(demo.user))
        }
        return render(
            "emulator.html",
            rows=rows,
            token=self.control_token,
            done=done,
            answers=[idp.answers for idp in self.idps.values() if idp.answers],
            number=numbers,
        )

    def act(self, provider: str, user: str, action: str, token: str) -> tuple[int, str]:
        """Approve or deny a user's pending request: (status, what was done)."""
        if not hmac.compare_digest(token.encode(), self.control_token.encode()):
            return 400, "bad token"
        idp = self.idps.get(provider)
        if idp is None or user not in {demo.user for demo in idp.users}:
            return 404, "no such user"
        if action not in ("approve", "deny"):
            return 404, "no such action"
        try:
            if action == "approve":
                idp.approve(user)
            else:
                idp.deny(user)
        except LookupError:
            return 303, f"no request is waiting for {user}"
        return 303, f"{action}d the request for {user}"
