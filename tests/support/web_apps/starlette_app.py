"""The Starlette test application (see the package docs): mfa_router over AsyncEngine or
AsyncSealedEngine (async memory store and ledger), with Starlette's SessionMiddleware as the
application's session, served by uvicorn in a thread of its own (one event loop)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine
from mfa_fsm.stores.aio import AsyncMemoryStore, AsyncStoreLedger
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.web.starlette import mfa_router
from tests.support.web_apps import APP_PASSWORD, PREFIX

SECRET = "test-secret-key-of-enough-length-0123456789"


def make_engine(
    configs: list[object], *, sealed: bool = False, throttle: Throttle | None = None
) -> AsyncEngine | AsyncSealedEngine:
    if sealed:
        ledger = AsyncStoreLedger(AsyncMemoryStore())
        state = SealedState({"k1": SealedState.generate_key()}, ledger=ledger)
        return AsyncSealedEngine(state, configs, throttle=throttle)
    return AsyncEngine(AsyncMemoryStore(), configs, throttle=throttle)


def make_app(
    engine: AsyncEngine | AsyncSealedEngine,
    *,
    complete: str = "redirect",
    calls: list[FlowView] | None = None,
    **options: Any,
) -> Starlette:
    seen = calls if calls is not None else []

    async def on_complete(request: Request, view: FlowView) -> Response | None:
        seen.append(view)
        if complete == "raise":
            raise RuntimeError("the application's on_complete failed")
        assert view.result is not None
        request.session["signed_in"] = view.result.user_id
        return RedirectResponse("/app/home", 302) if complete == "redirect" else None

    async def current_user(request: Request) -> str | None:
        user = request.session.get("user")
        return user if isinstance(user, str) else None

    options.setdefault("current_user", current_user)
    mfa = mfa_router(engine, secret_key=SECRET, on_complete=on_complete, **options)

    async def signin(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("password") != APP_PASSWORD:
            return PlainTextResponse("wrong password", 401)
        request.session.clear()
        request.session["user"] = form["user"]
        return await mfa.begin(request, form.get("provider") or None)

    async def whoami(request: Request) -> Response:
        user = request.session.get("signed_in")
        if user:
            return PlainTextResponse(f"signed in as {user}")
        return PlainTextResponse("not signed in", 401)

    async def home(request: Request) -> Response:
        return PlainTextResponse("home")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await engine.aclose()  # the engine's httpx client, in the loop that used it

    return Starlette(
        routes=[
            Route("/app/signin", signin, methods=["POST"]),
            Route("/app/whoami", whoami),
            Route("/app/home", home),
            Mount(PREFIX, mfa),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, same_site="lax")],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free loopback port, in a thread running one
    event loop; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", access_log=False, proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-asgi-app", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def live(engine: AsyncEngine | AsyncSealedEngine, **options: Any) -> Iterator[str]:
    with serve(make_app(engine, **options)) as base:
        yield base
