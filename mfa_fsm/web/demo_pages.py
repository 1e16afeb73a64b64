"""The demo application's own pages, framework-neutral: what ``mfa-fsm demo`` serves beside
the login pages, whichever web framework serves them (``--framework``).

::

    pages = DemoPages(idps)                       # provider name -> its running DemoIdp
    html = pages.signin_page(csrf_token)          # GET /signin
    provider = pages.check_password(user, password)   # POST /signin: None = refused
    html = pages.home_page(signed_in(view))       # GET /, after on_complete
    html = pages.control_page(done)               # GET /emulator: the users' phones
    status, done = pages.act(provider, user, action, token, number)  # POST /emulator/...

The pages are the application's side of an EXTERNAL first factor (its own sign-in page
checks its own password, then begins the second factor), its home (who is signed in), and the
emulator control page that plays the demo users' phones, inboxes and grid cards. Everything
here is plain Jinja2 and the emulators; what a framework adds is only its glue: its session
(who signed in, the sign-in form's CSRF token), its redirects, and mounting the login pages at
:data:`LOGIN` with that framework's mfa_fsm adapter. The templates
(``templates/mfa_fsm/demo/*.html``) name URLs with Flask-style endpoint names through
``url_for``; here :func:`url_for` maps those names to the demo's fixed paths.

The control page is for loopback only: it lets whoever reaches it approve a push.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.util
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape

from mfa_fsm import diagrams
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.registry import provider_flow
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.testing.demo_idps import DemoIdp, DemoUser
from mfa_fsm.web import events
from mfa_fsm.web.core import STATIC_PATH

if TYPE_CHECKING:
    from mfa_fsm.core.flow import Flow

#: Who checked an EXTERNAL user's first factor, as the pages say it.
DEMO_CHECKED_BY = "the mfa_fsm demo application (not the identity provider)"
#: Where the demo mounts the login pages, whatever the framework.
LOGIN = "/login"
#: The demo's sign-in form: what it says when the password or the form is refused.
NOT_ACCEPTED = "The user id or password was not accepted."
FORM_EXPIRED = "The form has expired; please sign in again."
#: Seconds between two refreshes of the control page when scripts are off (its script asks
#: every 2 seconds and reloads only on a change).
CONTROL_REFRESH_SECONDS = 5

#: Headers of the demo's own pages, whatever the framework (the login pages carry the core's).
DEMO_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    (
        "Content-Security-Policy",
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    ),
)

_PATHS = {
    "home": "/",
    "signin": "/signin",
    "signin_post": "/signin",
    "emulator": "/emulator",
    "emulator_state": "/emulator/state",
    "mfa_fsm.start_page": f"{LOGIN}/",
}


def url_for(endpoint: str, static: Callable[[str], str] | None = None, **values: str) -> str:
    """The demo's path for one of the endpoint names its templates use (Flask's names).

    ``static`` maps a file name of the login pages' static files to its URL (the adapter's
    static route; the web core's ``/login/_mfa_fsm_static/NAME`` by default)."""
    if endpoint == "mfa_fsm.static":
        name = values["filename"]
        return static(name) if static is not None else f"{LOGIN}{STATIC_PATH}/{name}"
    if endpoint == "emulator_act":
        return f"/emulator/{values['provider']}/{values['user']}/{values['action']}"
    return _PATHS[endpoint]


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.globals["url_for"] = url_for


def render(name: str, **context: Any) -> str:
    """One of the demo's templates (``mfa_fsm/demo/<name>``) rendered with ``context``."""
    return _TEMPLATES.get_template(f"mfa_fsm/demo/{name}").render(**context)


def current_user(kept: object) -> VerifiedUser | None:
    """The user the demo's sign-in page checked, from what the glue keeps in its session
    (the user id, a ``str``), or None."""
    return VerifiedUser(kept, checked_by=DEMO_CHECKED_BY) if isinstance(kept, str) else None


def signed_in(view: FlowView) -> dict[str, str]:
    """What the demo's ``on_complete`` keeps in the new session of the user the IdP confirmed
    (user id, display name, provider label), for :meth:`DemoPages.home_page`."""
    result = view.result
    if result is None:
        raise UsageError("signed_in() takes a Completed flow's view")
    return {
        "user": result.user_id,
        "name": result.display_name or result.user_id,
        "provider": events.provider_label(view.provider),
    }


def new_csrf_token() -> str:
    """A token for the demo's sign-in form, to keep in the session and repeat in the form
    (OWASP CSRF Prevention Cheat Sheet, "synchronizer token")."""
    return secrets.token_urlsafe(32)


def same_token(sent: str, kept: object) -> bool:
    """Whether the form's token is the one kept in the session (constant time)."""
    return isinstance(kept, str) and hmac.compare_digest(sent.encode(), kept.encode())


class DemoPages:
    """The demo application's pages over running emulators (provider name -> its DemoIdp)."""

    def __init__(
        self, idps: Mapping[str, DemoIdp], *, static: Callable[[str], str] | None = None
    ) -> None:
        self.idps = idps
        #: file name -> URL of the login pages' static files, as the adapter serves them
        self.static = static
        #: user -> (their IdP's provider name, the demo application's password)
        self.passwords = {
            user: (name, password)
            for name, idp in idps.items()
            for user, password in idp.app_passwords.items()
        }
        # One token per run in the control page's forms: a cross-site page cannot read it.
        self.control_token = secrets.token_urlsafe(32)

    def _render(self, name: str, **context: Any) -> str:
        return render(name, url_for=functools.partial(url_for, static=self.static), **context)

    # -- the application's sign-in and home ---------------------------------------------

    def signin_page(
        self, csrf_token: str, error: str | None = None, csrf_field: str = "csrf_token"
    ) -> str:
        """The sign-in page (the demo passwords beside it), with ``error`` if refused.
        ``csrf_field`` names the form's token field (Django's middleware reads its own)."""
        users = [(user, self.passwords[user][1]) for user in sorted(self.passwords)]
        return self._render(
            "signin.html",
            users=users,
            error=error,
            checked_by=DEMO_CHECKED_BY,
            login_url=url_for("mfa_fsm.start_page"),
            csrf_token=csrf_token,
            csrf_field=csrf_field,
        )

    def check_password(self, user: str, password: str) -> str | None:
        """The provider of ``user`` if ``password`` is their demo application password."""
        provider, expected = self.passwords.get(user, (None, None))
        # Compared in constant time, as any application's password check should be.
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return None
        return provider

    def home_page(self, signed_in: Mapping[str, str]) -> str:
        """The application's home for the user :func:`signed_in` describes."""
        return self._render(
            "home.html", signed_in=signed_in, login_url=url_for("mfa_fsm.start_page")
        )

    # -- the emulator control page ------------------------------------------------------

    def control_page(self, done: str = "") -> str:
        """The control page: per demo user the last code sent, the push buttons (the
        numbers to pick when the push shows one), the grid cards; ``done`` says what the
        last action did."""
        rows = [
            {
                "provider": demo.provider,
                "user": demo.user,
                "code": idp.last_code(demo.user),
                "choices": idp.number_choices(demo.user),
                "pending": idp.pending(demo.user),
                "approve_url": url_for(
                    "emulator_act", provider=demo.provider, user=demo.user, action="approve"
                ),
                "deny_url": url_for(
                    "emulator_act", provider=demo.provider, user=demo.user, action="deny"
                ),
            }
            for idp in self.idps.values()
            for demo in idp.users
        ]
        grids = [
            (demo.user, card)
            for idp in self.idps.values()
            for demo in idp.users
            if (card := idp.grid_card(demo.user)) is not None
        ]
        return self._render(
            "emulator.html",
            rows=rows,
            grids=grids,
            token=self.control_token,
            done=done,
            answers=[idp.answers for idp in self.idps.values() if idp.answers],
            fingerprint=self.fingerprint(),
            refresh_seconds=CONTROL_REFRESH_SECONDS,
        )

    def fingerprint(self) -> str:
        """A digest of what the control page shows that changes by itself (codes sent,
        numbers to match, requests waiting): its script reloads the page when this changes.
        A digest, so the state route that serves it never carries a code."""
        seen = [
            (
                demo.provider,
                demo.user,
                idp.last_code(demo.user),
                idp.number_shown(demo.user),
                idp.pending(demo.user),
            )
            for idp in self.idps.values()
            for demo in idp.users
        ]
        return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]

    def act(
        self, provider: str, user: str, action: str, token: str, number: str | None = None
    ) -> tuple[int, str]:
        """Press a control page button: approve (with the ``number`` picked, for a push
        with number matching) or deny ``user``'s pending request. Answers (status, what was
        done): 400 for a wrong page token, 404 for an unknown user or action, else 303 and
        the sentence the page shows next (``?done=``)."""
        if not hmac.compare_digest(token.encode(), self.control_token.encode()):
            return 400, "the control page's token is missing or wrong"
        idp = self.idps.get(provider)
        if idp is None or user not in {demo.user for demo in idp.users}:
            return 404, "no such demo user"
        if action not in ("approve", "deny"):
            return 404, "no such action"
        shown = idp.number_shown(user)
        try:
            if action == "deny":
                idp.deny(user)
                return 303, f"denied the request for {user}"
            if shown is not None and not number:
                # A real phone offers no plain "Approve" when a number is to be matched.
                return 303, f"tap the number the login page shows to approve {user}'s request"
            idp.approve(user, number=number or None)
        except LookupError:
            return 303, f"no request is waiting for {user}"
        if shown is not None and number != shown:
            return (
                303,
                f"{number} is not the number the login page shows: {user}'s request was refused",
            )
        return 303, f"approved the request for {user}"

    # -- beside the login pages ----------------------------------------------------------

    def aside(self, view: FlowView | None) -> Markup:
        """What the login pages show beside the flow: the demo users on the start page, the
        flow's live diagram on the others, and the link to the control page."""
        control = Markup(
            '<p><a href="/emulator" target="_blank" rel="noopener">Open the emulator control '
            "page</a> (your phone: approve or deny a push, read the code sent).</p>"
        )
        if view is None:
            # One closed <details> per provider, its users named in the summary: short at
            # a phone's width, each user's way in one click away.
            rows = Markup("").join(
                Markup(
                    "<details><summary><strong>{label}</strong>: {names}</summary><dl>{users}</dl>"
                    "</details>"
                ).format(
                    label=events.provider_label(provider),
                    names=", ".join(d.user for d in users),
                    users=Markup("").join(
                        Markup("<dt><code>{u}</code></dt><dd>{h}</dd>").format(u=d.user, h=d.how)
                        for d in users
                    ),
                )
                for provider, users in _users_by_provider(self.idps)
            )
            answers = Markup("").join(
                Markup("<p>{a}.</p>").format(a=idp.answers)
                for idp in self.idps.values()
                if idp.answers
            )
            return Markup(
                "<h2>Demo users</h2><p>EXTERNAL users (those with a demo sign-in "
                'password) sign in on the <a href="/signin">demo application\'s sign-in page</a> '
                "first; the others type the password their identity provider checks here.</p>"
                '<div class="mfa-demo-users">{rows}</div>'
                "{answers}{control}"
            ).format(rows=rows, answers=answers, control=control)
        return Markup(
            "<h2>The flow, live</h2><p>Current state: <strong>{s}</strong> (step {v})</p>"
            "{d}{control}"
        ).format(
            s=view.state, v=view.version, d=diagram(view.provider, view.state), control=control
        )


@functools.lru_cache(maxsize=64)
def diagram(provider: str, state: str) -> Markup:
    """A flow's diagram with ``state`` filled: inline SVG with Graphviz (its Mermaid source
    below it), else the state's next events as a short list (:func:`next_events`)."""
    try:
        flow = provider_flow(provider)
    except UsageError:
        return Markup("")
    source = escape(diagrams.mermaid(flow, current_state=state))
    # SVG needs Graphviz's dot and pydot (the diagrams extra); Mermaid text needs neither.
    if shutil.which("dot") and importlib.util.find_spec("pydot") is not None:
        svg = diagrams.svg(flow, current_state=state).decode("utf-8")
        drawing = Markup(svg[svg.index("<svg") :])  # noqa: S704 - Graphviz's output of our machine
        return Markup(
            '<div role="img" aria-label="Diagram of the {p} flow; the current state, {s}, is '
            'filled">{d}</div><details><summary>Mermaid source</summary><pre>{m}</pre></details>'
        ).format(p=provider, s=state, d=drawing, m=source)
    return next_events(flow, state)


def next_events(flow: type[Flow], state: str) -> Markup:
    """Without Graphviz: the current state and, one line per arrow leaving it, its events
    (with their outcome) and the state they lead to, from the flow's own table."""
    arrows = [
        arrow
        for arrow in diagrams.arrows(flow)
        if arrow.source == state
        or (arrow.source == diagrams.ANY_LIVE_STATE and state in _live_states(flow))
    ]
    items = Markup("").join(
        Markup("<li>{events} → <strong>{target}</strong></li>").format(
            events="; ".join(line for line in arrow.lines if " [" in line), target=arrow.target
        )
        for arrow in arrows
    )
    if not items:
        return Markup("<p>{s} is a final state: the flow has ended.</p>").format(s=state)
    return Markup(
        "<p>Next events from {s} (the diagram needs Graphviz's <code>dot</code>):</p>"
        '<ul class="mfa-flow-next">{i}</ul>'
    ).format(s=state, i=items)


def _live_states(flow: type[Flow]) -> set[str]:
    return {str(s.id) for s in flow.machine.states if not s.final}


def _users_by_provider(idps: Mapping[str, DemoIdp]) -> list[tuple[str, list[DemoUser]]]:
    """The demo users grouped by provider, in the emulators' order."""
    grouped: dict[str, list[DemoUser]] = {}
    for idp in idps.values():
        for user in idp.users:
            grouped.setdefault(user.provider, []).append(user)
    return list(grouped.items())
