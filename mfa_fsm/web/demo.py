"""The demo: the IdP emulators and the login pages on loopback, behind ``mfa-fsm demo``.

::

    with Demo(port=8700) as demo:       # emulators, engine, Flask app, HTTP server
        print(demo.url)                 # http://127.0.0.1:8700/ : the start page

The demo runs the real library end to end: the login pages (by default Flask's blueprint of
:mod:`mfa_fsm.web.blueprint`; ``framework=`` picks another of :data:`FRAMEWORKS`)
over an :class:`~mfa_fsm.engine.Engine` whose store is SQLite in a temporary directory (the
embedded default; any store URL, or sealed client-side state, on request), talking HTTP to
the emulator of every registered provider that declares one (``Flow.emulator``, a
:class:`~mfa_fsm.testing.demo_idps.DemoIdp`), found through the provider registry.
Beside every page it shows the flow's diagram with the current state filled in. The emulator
control page (``/emulator``) plays the user's phone: approve or deny a push, read the last
code sent, pick the number to match, read a grid card. The demo is for loopback only: its
control page would let anyone approve a push.

The demo application's own pages (sign-in, home, control page) are framework-neutral, in
:mod:`mfa_fsm.web.demo_pages`; this module holds the Flask glue (its session, redirects, the
blueprint) and :class:`Demo`, which runs it all.

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

import importlib
import importlib.util
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from flask import Flask, Response, abort, jsonify, redirect, request, session, url_for
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Response as BaseResponse

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.registry import provider_flows
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.stores.base import FlowStore, StoreLedger
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.testing.demo_idps import DemoIdp
from mfa_fsm.web import demo_pages
from mfa_fsm.web.demo_pages import (
    DEMO_CHECKED_BY,
    DEMO_HEADERS,
    FORM_EXPIRED,
    LOGIN,
    NOT_ACCEPTED,
    DemoPages,
)
from mfa_fsm.web.demo_pages import diagram as _diagram
from mfa_fsm.web.flask import mfa_blueprint

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

#: The web frameworks the demo can serve its pages with (``mfa-fsm demo --framework``):
#: name -> (the mfa_fsm adapter module it needs, the extra that installs the framework).
FRAMEWORKS: dict[str, tuple[str, str]] = {
    "flask": ("mfa_fsm.web.flask", "web"),
    "fastapi": ("mfa_fsm.web.starlette", "fastapi"),
    "django": ("mfa_fsm.web.django", "django"),
}

#: What each framework's demo imports besides the adapter (a missing one: which extra).
FRAMEWORK_NEEDS: dict[str, tuple[str, ...]] = {
    "flask": ("flask",),
    "fastapi": ("fastapi", "uvicorn", "httpx"),
    "django": ("django",),
}

__all__ = ["DEMO_CHECKED_BY", "FRAMEWORKS", "Demo", "check_framework", "create_app", "require"]
_ = _diagram  # re-exported for tests and older callers: the live diagram beside a flow


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
            "run the demo with --framework flask or django"
        )
    for module in FRAMEWORK_NEEDS[framework]:
        require(module, extra, f"the demo on {framework}")


def _aside(idps: Mapping[str, DemoIdp], view: FlowView | None) -> str:
    """The login pages' aside for the demo (:meth:`DemoPages.aside`), for callers that pass
    the emulators (the test apps of tests/support/web_apps)."""
    return DemoPages(idps).aside(view)


def demo_idps() -> dict[str, type[DemoIdp]]:
    """The emulator class of every registered provider that declares one, by provider name."""
    found: dict[str, type[DemoIdp]] = {}
    for name, flow in provider_flows().items():
        if flow.emulator is not None:
            module, _, attribute = flow.emulator.partition(":")
            found[name] = getattr(importlib.import_module(module), attribute)
    return found


def demo_engine(
    idps: Mapping[str, DemoIdp],
    *,
    store: FlowStore | None = None,
    sealed: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Engine | SealedEngine:
    """The demo's engine over running emulators: on ``store``, or on sealed client-side
    state with a key made for this run (the replay ledger in memory). ``options`` maps a
    provider name to extra settings of its configuration (tests shorten the push lifetime).
    Raises ValueError with neither a store nor ``sealed``."""
    settings = options or {}
    configs = [idp.config(**dict(settings.get(name, {}))) for name, idp in idps.items()]
    if sealed:
        require("cryptography", "sealed", "sealed client-side state (--sealed)")
        from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - the sealed extra

        # The replay ledger (one version number per flow) refuses old cookies.
        ledger = StoreLedger(MemoryStore())
        keys = {"demo": SealedState.generate_key()}
        return SealedEngine(SealedState(keys, ledger=ledger), configs)
    if store is None:
        raise ValueError("give the demo a store, or sealed=True")
    return Engine(store, configs)


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
    ``store``, ``sealed`` and ``options`` are :func:`demo_engine`'s.
    """
    engine = demo_engine(idps, store=store, sealed=sealed, options=options)
    pages = DemoPages(idps, static=lambda name: url_for("mfa_fsm.static", filename=name))
    app = Flask(__name__)
    # A new key per run: cookies of an earlier run are refused, and nothing needs keeping.
    app.secret_key = secrets.token_bytes(32)
    login = mfa_blueprint(
        engine,
        current_user=lambda: demo_pages.current_user(session.get("demo_user")),
        on_complete=_signed_in,
        throttle=throttle,
        secure_cookies=False,
        aside=pages.aside,
        title="mfa_fsm demo",
    )
    app.register_blueprint(login, url_prefix=LOGIN)

    def home() -> BaseResponse | str:
        signed_in = session.get("signed_in")
        if not isinstance(signed_in, dict):
            return redirect(url_for("signin"))
        return pages.home_page(signed_in)

    def signin(error: str | None = None, status: int = 200) -> tuple[str, int]:
        token = session.get("signin_csrf")
        if not isinstance(token, str):
            token = session["signin_csrf"] = demo_pages.new_csrf_token()
        return pages.signin_page(token, error), status

    def signin_post() -> BaseResponse | tuple[str, int]:
        if not demo_pages.same_token(
            request.form.get("csrf_token", ""), session.get("signin_csrf")
        ):
            return signin(FORM_EXPIRED, 400)
        user = request.form.get("user", "")
        provider = pages.check_password(user, request.form.get("password", ""))
        if provider is None:
            return signin(NOT_ACCEPTED, 401)
        session.clear()  # a new session for the signed-in user (no session fixation)
        session["demo_user"] = user
        return login.begin(provider)

    def control(provider: str, user: str, action: str) -> BaseResponse:
        status, done = pages.act(
            provider,
            user,
            action,
            request.form.get("token", ""),
            request.form.get("number") or None,
        )
        if status != 303:
            abort(status)
        return redirect(url_for("emulator", done=done), code=303)

    app.add_url_rule("/", "home", home)
    app.add_url_rule("/signin", "signin", signin, methods=["GET"])
    app.add_url_rule("/signin", "signin_post", signin_post, methods=["POST"])
    app.add_url_rule(
        "/emulator", "emulator", lambda: pages.control_page(request.args.get("done", ""))
    )
    app.add_url_rule(
        "/emulator/state", "emulator_state", lambda: jsonify(fingerprint=pages.fingerprint())
    )
    app.add_url_rule(
        "/emulator/<provider>/<user>/<action>", "emulator_act", control, methods=["POST"]
    )
    app.after_request(_headers)
    return app


def _headers(response: Response) -> Response:
    for name, value in DEMO_HEADERS:
        response.headers.setdefault(name, value)
    return response


def _signed_in(view: FlowView) -> BaseResponse:
    """The demo's ``on_complete``: a new session for the user the IdP confirmed, then home."""
    session.clear()  # a new session for the signed-in user (no session fixation)
    session["signed_in"] = demo_pages.signed_in(view)
    return redirect(url_for("home"), code=303)


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
        #: the ASGI app's (FastAPI's) port and how to stop its server, while it runs
        self._asgi_port = 0
        self._asgi_stop: Callable[[], None] | None = None

    def emulator(self, provider: str) -> Any:
        """The running emulator of ``provider`` (its ``EmulatorServer``), for tests and scripts."""
        return self.idps[provider].emulator

    @property
    def url(self) -> str:
        """The start page's URL."""
        if self._asgi_port:
            return f"http://{self.host}:{self._asgi_port}/"
        if self._server is None:
            raise RuntimeError("the demo is not running; call start()")
        return f"http://{self.host}:{self._server.server_port}/"

    def start(self) -> Self:
        """Start the emulators, build the app, and serve it on a background thread. Raises
        UsageError for a framework or option this install cannot serve (saying which extra
        to install), with nothing left running."""
        check_framework(self.framework)
        try:
            if self.framework == "fastapi":
                return self._start_asgi()
            return self._start_wsgi()
        except BaseException:
            self.stop()  # the emulators and the temporary store started so far
            raise

    def _start_wsgi(self) -> Self:
        """Flask's or Django's demo: a WSGI app on werkzeug's threaded server."""
        if not self.sealed and self.store is None:
            # SQLAlchemy comes with the web extra (older installs: the sql extra).
            require("sqlalchemy", "web", "the demo's embedded SQLite store")
            from mfa_fsm.stores.sql import SqlStore  # noqa: PLC0415 - the web extra

            self._tmp = Path(tempfile.mkdtemp(prefix="mfa_fsm_demo_"))
            self.store = SqlStore(f"sqlite:///{self._tmp / 'flows.db'}")
        for idp in self.idps.values():
            idp.start()
        app: Any
        if self.framework == "django":
            from mfa_fsm.web import demo_django  # noqa: PLC0415 - the django extra

            engine = demo_engine(
                self.idps, store=self.store, sealed=self.sealed, options=self.options
            )
            app = demo_django.create_app(self.idps, engine, throttle=self.throttle)
        else:
            app = create_app(
                self.idps,
                store=self.store,
                sealed=self.sealed,
                options=self.options,
                throttle=self.throttle,
            )
        # Both are WSGI apps: werkzeug's threaded server serves either.
        self._server = make_server(self.host, self.port, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mfa_fsm-demo", daemon=True
        )
        self._thread.start()
        return self

    def _async_engine(self) -> tuple[Any, Any]:
        """FastAPI's engine and the store it made (None for sealed state): an AsyncEngine on
        SQLite through aiosqlite in a temporary directory, or an AsyncSealedEngine."""
        from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine  # noqa: PLC0415
        from mfa_fsm.stores.aio import AsyncMemoryStore, AsyncStoreLedger  # noqa: PLC0415

        if self.store is not None:
            raise UsageError(
                "the fastapi demo keeps flows in SQLite (or --sealed); --store URL is for "
                "--framework flask or django"
            )
        settings = self.options or {}
        configs = [idp.config(**dict(settings.get(n, {}))) for n, idp in self.idps.items()]
        if self.sealed:
            require("cryptography", "sealed", "sealed client-side state (--sealed)")
            from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - the sealed extra

            ledger = AsyncStoreLedger(AsyncMemoryStore())  # refuses old cookies
            keys = {"demo": SealedState.generate_key()}
            return AsyncSealedEngine(SealedState(keys, ledger=ledger), configs), None
        require("aiosqlite", "fastapi", "the fastapi demo's SQLite store")
        from mfa_fsm.stores.sql_async import AsyncSqlStore  # noqa: PLC0415

        self._tmp = Path(tempfile.mkdtemp(prefix="mfa_fsm_demo_"))
        store = AsyncSqlStore(f"sqlite+aiosqlite:///{self._tmp / 'flows.db'}")
        return AsyncEngine(store, configs), store

    def _start_asgi(self) -> Self:
        """FastAPI's demo: the FastAPI app over :meth:`_async_engine`, served by uvicorn on a
        thread with an event loop of its own; the engine (its httpx client) and the store are
        closed in that loop when it stops."""
        import asyncio  # noqa: PLC0415 - FastAPI's demo only
        import socket  # noqa: PLC0415

        import uvicorn  # noqa: PLC0415 - the fastapi extra

        from mfa_fsm.web import demo_starlette  # noqa: PLC0415 - the fastapi extra

        for idp in self.idps.values():
            idp.start()  # before the engine: its configurations name their addresses
        engine, store = self._async_engine()
        app = demo_starlette.create_app(self.idps, engine, throttle=self.throttle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        server = uvicorn.Server(
            # proxy_headers=False: uvicorn's default trusts X-Forwarded-For from loopback
            # (forwarded_allow_ips), which would let any local client pick the address the
            # per-client throttles count; the demo sits behind no proxy.
            uvicorn.Config(
                app, log_level="warning", lifespan="off", access_log=False, proxy_headers=False
            )
        )

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                await engine.aclose()
                if store is not None:
                    await store.close()

        thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name="mfa_fsm-demo", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                sock.close()
                raise RuntimeError("uvicorn did not start the demo's FastAPI app")
            time.sleep(0.01)
        self._asgi_port = int(sock.getsockname()[1])

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

        self._asgi_stop = stop
        return self

    @property
    def store_description(self) -> str:
        """Where flows are kept, for people."""
        if self.sealed:
            return "sealed client-side state, in the flow's cookie"
        if self._tmp is not None:
            return f"SQLite in {self._tmp}"
        return type(self.store).__name__

    def stop(self) -> None:
        """Stop serving, stop the emulators, and remove the temporary store."""
        if self._asgi_stop is not None:
            self._asgi_stop()
            self._asgi_stop = None
            self._asgi_port = 0
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
