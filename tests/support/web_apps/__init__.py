"""Test applications of the login pages, one per web framework, in two shapes.

**The demo's shape, for the browser suite** (tests/web/test_browser*.py).
:class:`LiveApp` is a :class:`~mfa_fsm.web.demo.Demo` (the emulators, a store, the pages on
loopback over real HTTP) whose application is built by one framework's test app in this
package: ``flask_app``, ``fastapi_app`` or ``django_app``, each a module with
``build(live) -> (kind, app)`` where ``kind`` is ``"wsgi"`` or ``"asgi"``. Every one serves
the same URLs, so the same browser test runs against each:

    /login/...                     the login pages (the framework's mfa_fsm adapter)
    /signin                        the application's own sign-in (an EXTERNAL first factor)
    /                              the application's home: who on_complete signed in
    /emulator, /emulator/<provider>/<user>/<action>   the emulator control page (the phone)

A WSGI app is served by werkzeug's threaded server, an ASGI app by uvicorn, each on a
background thread on a free loopback port.

**The adapter tests' common face** (tests/web/test_frameworks.py), :data:`ADAPTER_APPS`: each
module ``<name>_app`` also has ``make_engine(configs, *, sealed=False, throttle=None)`` (the
engine its framework runs: blocking for Flask and Django, async for Starlette) and
``live(engine, **options)``, a context manager serving the application over real HTTP on a
free loopback port and yielding its base URL. Every application mounts the pages at
:data:`PREFIX` and has a sign-in of its own, ``POST /app/signin`` (form: ``user``,
``password`` = :data:`APP_PASSWORD`, optional ``provider``), which makes a new session for
the user and begins their second factor, and ``GET /app/whoami`` (``signed in as <user>``
once ``on_complete`` put the completed login in the session, else 401). ``options`` go to
the framework's mount function (``mfa_blueprint`` / ``mfa_router`` / ``mfa_urls``) but for
``on_complete``: ``complete="redirect"`` (default: on_complete signs the user in and
redirects to ``/app/home``), ``complete="page"`` (it returns nothing: the library's success
page) or ``complete="raise"`` (it raises RuntimeError). ``calls`` (a list) receives each view
on_complete got.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from werkzeug.serving import make_server

from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine, Engine, SealedEngine
from mfa_fsm.stores.aio import AsyncMemoryStore, AsyncStoreLedger
from mfa_fsm.stores.base import StoreLedger
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.web.demo import Demo

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: The frameworks the browser suite runs on, in the order it runs them; the environment
#: variable MFA_FSM_WEB_FRAMEWORKS (comma-separated) picks others, e.g. ``django-async``
#: (Django's async views over an AsyncEngine, under uvicorn).
FRAMEWORKS = tuple(
    name.strip()
    for name in os.environ.get("MFA_FSM_WEB_FRAMEWORKS", "flask,fastapi,django").split(",")
    if name.strip()
)
KNOWN = ("flask", "fastapi", "django", "django-async")

PREFIX = "/login"
APP_PASSWORD = "app-password"
#: The adapter tests' apps (tests/web/test_frameworks.py).
ADAPTER_APPS = ("flask", "starlette", "django")

Kind = Literal["wsgi", "asgi"]


class LiveApp(Demo):
    """The demo's emulators and store, served by ``framework``'s test app on loopback.

    Takes :class:`~mfa_fsm.web.demo.Demo`'s options (``store``, ``sealed``, ``options``,
    ``throttle``); ``url`` is the application's home, ``emulator(provider)`` an emulator.
    """

    def __init__(self, framework: str, *, asynchronous: bool = False, **options: Any) -> None:
        if framework not in KNOWN:
            raise ValueError(f"unknown framework {framework!r}; one of {KNOWN}")
        if framework == "django-async":
            framework, asynchronous = "django", True
        super().__init__(**options)
        self.framework = framework
        #: Django only: async views over an AsyncEngine, served as ASGI (FastAPI always is).
        self.asynchronous = asynchronous
        self._stop_server: Callable[[], None] | None = None
        #: Awaited in the ASGI server's event loop once it has stopped (an app without a
        #: lifespan, Django's, closes its AsyncEngine here).
        self.async_closers: list[Callable[[], Awaitable[None]]] = []
        self._port = 0

    def async_engine(self) -> AsyncEngine | AsyncSealedEngine:
        """A new AsyncEngine over the emulators, its flows in memory (this process's), or an
        AsyncSealedEngine (a replay ledger in memory) when ``sealed``."""
        settings = self.options or {}
        configs = [idp.config(**dict(settings.get(name, {}))) for name, idp in self.idps.items()]
        if self.sealed:
            from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - the sealed extra

            ledger = AsyncStoreLedger(AsyncMemoryStore())
            keys = {"demo": SealedState.generate_key()}
            return AsyncSealedEngine(SealedState(keys, ledger=ledger), configs)
        return AsyncEngine(AsyncMemoryStore(), configs)

    def engine(self) -> Engine | SealedEngine:
        """A new engine over the emulators and the store, as the demo makes it."""
        settings = self.options or {}
        configs = [idp.config(**dict(settings.get(name, {}))) for name, idp in self.idps.items()]
        if self.sealed:
            from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - the sealed extra

            ledger = StoreLedger(MemoryStore())
            return SealedEngine(
                SealedState({"demo": SealedState.generate_key()}, ledger=ledger), configs
            )
        assert self.store is not None
        return Engine(self.store, configs)

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the app is not running; call start()")
        return f"http://{self.host}:{self._port}/"

    def start(self) -> Self:
        if self.framework == "flask":
            # The demo itself is the Flask test app.
            super().start()
            assert self._server is not None
            self._port = self._server.server_port
            return self
        if not self.sealed and self.store is None:
            from mfa_fsm.stores.sql import SqlStore  # noqa: PLC0415 - the sql extra

            self._tmp = Path(tempfile.mkdtemp(prefix="mfa_fsm_live_"))
            self.store = SqlStore(f"sqlite:///{self._tmp / 'flows.db'}")
        for idp in self.idps.values():
            idp.start()
        module = importlib.import_module(f"tests.support.web_apps.{self.framework}_app")
        kind, app = module.build(self)
        if kind == "wsgi":
            self._serve_wsgi(app)
        else:
            self._serve_asgi(app)
        return self

    def _serve_wsgi(self, app: Any) -> None:
        server = make_server(self.host, self.port, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, name=f"live-{self.framework}", daemon=True
        )
        thread.start()
        self._port = server.server_port

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        self._stop_server = stop

    def _serve_asgi(self, app: Any) -> None:
        import socket  # noqa: PLC0415

        import uvicorn  # noqa: PLC0415 - the ASGI test apps only

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        # Lifespan "auto": FastAPI closes its engine at shutdown; Django has no lifespan.
        config = uvicorn.Config(
            app, log_level="warning", lifespan="auto", access_log=False, proxy_headers=False
        )
        server = uvicorn.Server(config)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:  # an AsyncEngine's httpx client closes in the loop that used it
                for close in self.async_closers:
                    await close()

        thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name=f"live-{self.framework}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"uvicorn did not start the {self.framework} test app")
            time.sleep(0.01)
        self._port = sock.getsockname()[1]

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()

        self._stop_server = stop

    def stop(self) -> None:
        if self._stop_server is not None:
            self._stop_server()
            self._stop_server = None
        self._port = 0
        super().stop()
