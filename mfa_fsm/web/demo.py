"""The demo: the IdP emulators and the login pages on loopback, behind ``mfa-fsm demo``.

::

    with Demo(port=8700) as demo:       # emulators, engine, Flask app, HTTP server
        print(demo.url)                 # http://127.0.0.1:8700/ : the start page

The demo runs the real library end to end: the blueprint of :mod:`mfa_fsm.web.blueprint`
over an :class:`~mfa_fsm.engine.Engine` whose store is SQLite in a temporary directory (the
embedded default; any store URL, or sealed client-side state, on request), talking HTTP to
the emulator of every registered provider that declares one (``Flow.emulator``, a
:class:`~mfa_fsm.testing.demo_idps.DemoIdp`), found through the provider registry.
Beside every page it shows the flow's diagram with the current state filled in. The emulator
control page (``/emulator``) plays the user's phone: approve or deny a push, read the last
code sent. The demo is for loopback only: its control page would let anyone approve a push.

The demo shows the pattern an application follows for an EXTERNAL first factor: its own
sign-in page (``/signin``) checks the user's *application* password (each emulator's
``DemoIdp.app_passwords``, printed at start), makes a new session
for the user and calls ``blueprint.begin()``, so the second factor starts only for a user the
demo vouches for; the pages say whose password was checked and by whom. Users whose password
the IdP checks type it on the login start page.
Its ``on_complete`` makes the demo's own signed-in session and sends the browser to the
demo's home (``/``), which says who is signed in, as an application's would.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.util
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from flask import Flask, Response, abort, redirect, render_template, request, session, url_for
from markupsafe import Markup, escape
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Response as BaseResponse

from mfa_fsm import diagrams
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.registry import provider_flow, provider_flows
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.stores.base import FlowStore, StoreLedger
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.testing.demo_idps import DemoIdp
from mfa_fsm.web import events
from mfa_fsm.web.blueprint import MfaBlueprint, mfa_blueprint

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

#: The web frameworks the demo can serve its pages with (``mfa-fsm demo --framework``):
#: name -> (the mfa_fsm adapter module it needs, the extra that installs the framework).
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "flask": ("mfa_fsm.web.blueprint", "web"),
    "fastapi": ("mfa_fsm.web.starlette", "fastapi"),
    "django": ("mfa_fsm.web.django", "django"),
}

#: Who checked an EXTERNAL user's first factor, as the pages say it.
DEMO_CHECKED_BY = "the mfa_fsm demo application (not the identity provider)"


def require(module: str, extra: str, what: str) -> None:
    """Raise UsageError saying which extra to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{what} needs the {extra} extra: pip install 'mfa_fsm[{extra}]'")


def check_framework(framework: str) -> None:
    """Raise UsageError unless the demo can serve its pages with ``framework`` here: a name of
    :data:`FRAMEWORKS` whose mfa_fsm adapter this build has."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"the demo's framework is one of {', '.join(FRAMEWORKS)}")
    adapter, extra = FRAMEWORKS[framework]
    try:
        found = importlib.util.find_spec(adapter) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        raise UsageError(
            f"this mfa_fsm has no {framework} adapter ({adapter}) yet; "
            "run the demo with --framework flask"
        )
    if framework != "flask":
        # Only Flask's demo is wired so far; the adapters arrive on their own branches.
        raise UsageError(
            f"the demo does not serve its pages with {framework} yet ({extra} extra); "
            "run it with --framework flask"
        )


def demo_idps() -> dict[str, type[DemoIdp]]:
    """The emulator class of every registered provider that declares one, by provider name."""
    found: dict[str, type[DemoIdp]] = {}
    for name, flow in provider_flows().items():
        if flow.emulator is not None:
            module, _, attribute = flow.emulator.partition(":")
            found[name] = getattr(importlib.import_module(module), attribute)
    return found


def create_app(
    idps: Mapping[str, DemoIdp],
    *,
    store: FlowStore | None = None,
    sealed: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    throttle: Throttle | Literal["default"] | None = "default",
) -> Flask:
    """The demo's Flask application, over running emulators (provider name -> its DemoIdp).

    ``throttle`` is the blueprint's (by default its default rates, in this process).

    ``store`` keeps the flows (required unless ``sealed``, which seals them into the cookie
    with a key made for this run); ``options`` maps a provider name to extra settings of its
    configuration (tests shorten the push lifetime).
    """
    settings = options or {}
    configs = [idp.config(**dict(settings.get(name, {}))) for name, idp in idps.items()]
    engine: Engine | SealedEngine
    if sealed:
        require("cryptography", "sealed", "sealed client-side state (--sealed)")
        from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - the sealed extra

        # The replay ledger (one version number per flow) refuses old cookies.
        ledger = StoreLedger(MemoryStore())
        keys = {"demo": SealedState.generate_key()}
        engine = SealedEngine(SealedState(keys, ledger=ledger), configs)
    else:
        if store is None:
            raise ValueError("give the demo a store, or sealed=True")
        engine = Engine(store, configs)

    app = Flask(__name__)
    # A new key per run: cookies of an earlier run are refused, and nothing needs keeping.
    app.secret_key = secrets.token_bytes(32)
    login = mfa_blueprint(
        engine,
        current_user=_current_user,
        on_complete=_signed_in,
        throttle=throttle,
        secure_cookies=False,
        aside=functools.partial(_aside, idps),
        title="mfa_fsm demo",
    )
    app.register_blueprint(login, url_prefix="/login")
    control = _Control(idps, app.secret_key)
    signin = _SignIn(login, idps)
    app.add_url_rule("/", "home", _home)
    app.add_url_rule("/signin", "signin", signin.page, methods=["GET"])
    app.add_url_rule("/signin", "signin_post", signin.check, methods=["POST"])
    app.add_url_rule("/emulator", "emulator", control.page, methods=["GET"])
    app.add_url_rule("/emulator/state", "emulator_state", control.state, methods=["GET"])
    app.add_url_rule(
        "/emulator/<provider>/<user>/<action>", "emulator_act", control.act, methods=["POST"]
    )
    app.after_request(_headers)
    return app


def _headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def _current_user() -> VerifiedUser | None:
    """The user the demo's own sign-in page checked, from the demo's session."""
    user = session.get("demo_user")
    return VerifiedUser(user, checked_by=DEMO_CHECKED_BY) if isinstance(user, str) else None


def _signed_in(view: FlowView) -> BaseResponse:
    """The demo's ``on_complete``: a new session for the user the IdP confirmed, then home."""
    result = view.result
    assert result is not None  # noqa: S101 - on_complete sees a Completed view
    session.clear()  # a new session for the signed-in user (no session fixation)
    session["signed_in"] = {
        "user": result.user_id,
        "name": result.display_name or result.user_id,
        "provider": events.provider_label(view.provider),
    }
    return redirect(url_for("home"), code=303)


def _home() -> BaseResponse | str:
    """The demo application's home: who is signed in, or its sign-in page."""
    signed_in = session.get("signed_in")
    if not isinstance(signed_in, dict):
        return redirect(url_for("signin"))
    return render_template(
        "mfa_fsm/demo/home.html", signed_in=signed_in, login_url=url_for("mfa_fsm.start_page")
    )


def _csrf_token() -> str:
    """The demo sign-in form's CSRF token: a random value kept in the (signed) session and
    repeated in the form (OWASP CSRF Prevention Cheat Sheet, "synchronizer token")."""
    token = session.get("signin_csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["signin_csrf"] = token
    return token


class _SignIn:
    """The demo application's own sign-in page: it checks an EXTERNAL user's *application*
    password, then begins the second factor at that user's IdP."""

    def __init__(self, login: MfaBlueprint, idps: Mapping[str, DemoIdp]) -> None:
        self.login = login
        #: user -> (their IdP's provider name, the demo application's password)
        self.passwords = {
            user: (name, password)
            for name, idp in idps.items()
            for user, password in idp.app_passwords.items()
        }

    def page(self, error: str | None = None, status: int = 200) -> tuple[str, int]:
        users = [(user, self.passwords[user][1]) for user in sorted(self.passwords)]
        html = render_template(
            "mfa_fsm/demo/signin.html",
            users=users,
            error=error,
            checked_by=DEMO_CHECKED_BY,
            login_url=url_for("mfa_fsm.start_page"),
            csrf_token=_csrf_token(),
        )
        return html, status

    def check(self) -> BaseResponse | tuple[str, int]:
        expected_token = session.get("signin_csrf")
        sent_token = request.form.get("csrf_token", "")
        if not isinstance(expected_token, str) or not hmac.compare_digest(
            sent_token.encode(), expected_token.encode()
        ):
            return self.page("The form has expired; please sign in again.", 400)
        user = request.form.get("user", "")
        password = request.form.get("password", "")
        provider, expected = self.passwords.get(user, (None, None))
        # Compared in constant time, as any application's password check should be.
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            return self.page("The user id or password was not accepted.", 401)
        session.clear()  # a new session for the signed-in user (no session fixation)
        session["demo_user"] = user
        return self.login.begin(provider)


#: Seconds between two refreshes of the control page when scripts are off (its script asks
#: every 2 seconds and reloads only on a change).
CONTROL_REFRESH_SECONDS = 5


class _Control:
    """The emulator control page: the demo users' phones, inboxes and grid cards."""

    def __init__(self, idps: Mapping[str, DemoIdp], key: bytes) -> None:
        self.idps = idps
        # One token per run, in the page's forms: a cross-site page cannot read it.
        self.token = hmac.new(key, b"mfa_fsm.demo.control", "sha256").hexdigest()

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "provider": demo.provider,
                "user": demo.user,
                "code": idp.last_code(demo.user),
                "choices": idp.number_choices(demo.user),
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

    def _fingerprint(self) -> str:
        """What the page shows that changes by itself (codes sent, numbers to match)."""
        seen = [
            (demo.provider, demo.user, idp.last_code(demo.user), idp.number_shown(demo.user))
            for idp in self.idps.values()
            for demo in idp.users
        ]
        # A digest, so the state route never carries a code itself.
        return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]

    def page(self) -> str:
        grids = [
            (demo.user, card)
            for idp in self.idps.values()
            for demo in idp.users
            if (card := idp.grid_card(demo.user)) is not None
        ]
        return render_template(
            "mfa_fsm/demo/emulator.html",
            rows=self._rows(),
            grids=grids,
            token=self.token,
            done=request.args.get("done", ""),
            answers=[idp.answers for idp in self.idps.values() if idp.answers],
            fingerprint=self._fingerprint(),
            state_url=url_for("emulator_state"),
            refresh_seconds=CONTROL_REFRESH_SECONDS,
            login_url=url_for("mfa_fsm.start_page"),
            static_url=lambda name: url_for("mfa_fsm.static", filename=name),
        )

    def state(self) -> dict[str, str]:
        """The page's fingerprint, for its script: it reloads when this changes."""
        return {"fingerprint": self._fingerprint()}

    def act(self, provider: str, user: str, action: str) -> BaseResponse:
        sent = request.form.get("token", "")
        if not hmac.compare_digest(sent.encode(), self.token.encode()):
            abort(400)
        idp = self.idps.get(provider)
        if idp is None or user not in {demo.user for demo in idp.users}:
            abort(404)
        if action not in ("approve", "deny"):
            abort(404)
        number = request.form.get("number") or None
        shown = idp.number_shown(user)
        try:
            if action == "deny":
                idp.deny(user)
                done = f"denied the request for {user}"
            elif shown is not None and number is None:
                # A real phone offers no plain "Approve" when a number is to be matched.
                done = f"tap the number the login page shows to approve {user}'s request"
            else:
                idp.approve(user, number=number)
                if shown is not None and number != shown:
                    done = (
                        f"{number} is not the number the login page shows: "
                        f"{user}'s request was refused"
                    )
                else:
                    done = f"approved the request for {user}"
        except LookupError:
            done = f"no request is waiting for {user}"
        return redirect(url_for("emulator", done=done), code=303)


@functools.lru_cache(maxsize=64)
def _diagram(provider: str, state: str) -> Markup:
    """A flow's diagram with ``state`` filled: inline SVG with Graphviz, else Mermaid text."""
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
    return Markup("<pre>{m}</pre>").format(m=source)


def _aside(idps: Mapping[str, DemoIdp], view: FlowView | None) -> str:
    control = Markup(
        '<p><a href="/emulator" target="_blank" rel="noopener">Open the emulator control '
        "page</a> (your phone: approve or deny a push, read the code sent).</p>"
    )
    if view is None:
        rows = Markup("").join(
            Markup("<tr><td>{p}</td><td><code>{u}</code></td><td>{h}</td></tr>").format(
                p=d.provider, u=d.user, h=d.how
            )
            for idp in idps.values()
            for d in idp.users
        )
        answers = Markup("").join(
            Markup("<p>{a}.</p>").format(a=idp.answers) for idp in idps.values() if idp.answers
        )
        return Markup(
            "<h2>Demo users</h2><p>EXTERNAL users (those with a demo sign-in "
            'password) sign in on the <a href="/signin">demo application\'s sign-in page</a> '
            "first; the others type the password their identity provider checks here.</p>"
            "<table><thead><tr><th>provider</th><th>user id</th>"
            "<th>how to sign in</th></tr></thead><tbody>{rows}</tbody></table>"
            "{answers}{control}"
        ).format(rows=rows, answers=answers, control=control)
    return Markup(
        "<h2>The flow, live</h2><p>Current state: <strong>{s}</strong> (step {v})</p>{d}{control}"
    ).format(s=view.state, v=view.version, d=_diagram(view.provider, view.state), control=control)


class Demo:
    """The demo running: the emulators, the app and its HTTP server, on loopback.

    ``framework`` names the web framework serving the pages (:data:`FRAMEWORKS`; Flask by
    default); :meth:`start` raises UsageError for one this build cannot serve.

    ``store`` keeps the flows; by default SQLite in a temporary directory, removed on
    :meth:`stop`. ``sealed=True`` keeps them in the flow's cookie instead. Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store: FlowStore | None = None,
        sealed: bool = False,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        throttle: Throttle | Literal["default"] | None = "default",
        framework: str = "flask",
    ) -> None:
        self.host = host
        #: the web framework serving the pages: a name of :data:`FRAMEWORKS`
        self.framework = framework
        self.throttle = throttle
        self.port = port
        self.store = store
        self.sealed = sealed
        #: provider name -> its running emulator, for every provider that declares one
        self.idps: dict[str, DemoIdp] = {name: idp() for name, idp in demo_idps().items()}
        self.options = options
        self._tmp: Path | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def emulator(self, provider: str) -> Any:
        """The running emulator of ``provider`` (its ``EmulatorServer``), for tests and scripts."""
        return self.idps[provider].emulator

    @property
    def url(self) -> str:
        """The start page's URL."""
        if self._server is None:
            raise RuntimeError("the demo is not running; call start()")
        return f"http://{self.host}:{self._server.server_port}/"

    @property
    def store_description(self) -> str:
        """Where flows are kept, for people."""
        if self.sealed:
            return "sealed client-side state, in the flow's cookie"
        if self._tmp is not None:
            return f"SQLite in {self._tmp}"
        return type(self.store).__name__

    def start(self) -> Self:
        """Start the emulators, build the app, and serve it on a background thread."""
        check_framework(self.framework)
        if not self.sealed and self.store is None:
            # SQLAlchemy comes with the web extra (older installs: the sql extra).
            require("sqlalchemy", "web", "the demo's embedded SQLite store")
            from mfa_fsm.stores.sql import SqlStore  # noqa: PLC0415 - the web extra

            self._tmp = Path(tempfile.mkdtemp(prefix="mfa_fsm_demo_"))
            self.store = SqlStore(f"sqlite:///{self._tmp / 'flows.db'}")
        for idp in self.idps.values():
            idp.start()
        app = create_app(
            self.idps,
            store=self.store,
            sealed=self.sealed,
            options=self.options,
            throttle=self.throttle,
        )
        self._server = make_server(self.host, self.port, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mfa_fsm-demo", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop the emulators, and remove the temporary store."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for idp in self.idps.values():
            idp.stop()
        if self._tmp is not None:
            # The demo made this store, so it closes it; a store given to it is the caller's.
            close = getattr(self.store, "close", None)
            if callable(close):
                close()
            self.store = None
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
