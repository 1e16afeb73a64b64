"""The FastAPI test app: the demo's shape (see :mod:`tests.support.web_apps`) on FastAPI.

The login pages are :func:`mfa_fsm.web.starlette.mfa_router` over an
:class:`~mfa_fsm.engine.AsyncEngine` (flows in memory), mounted at ``/login``; the
application's session is Starlette's ``SessionMiddleware`` (a signed cookie); its sign-in
form carries a synchronizer CSRF token kept in that session (OWASP CSRF Prevention Cheat
Sheet), as the Flask demo's does.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from mfa_fsm.web import demo
from mfa_fsm.web.starlette import mfa_router

from .demo_pages import NOT_ACCEPTED, DemoPages, current_user, signed_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from . import Kind, LiveApp

FORM_EXPIRED = "The form has expired; please sign in again."


def _signin_token(request: Request) -> str:
    token = request.session.get("signin_csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["signin_csrf"] = token
    return token


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (what the demo's pages send), without python-multipart."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def build(live: LiveApp) -> tuple[Kind, Callable[..., Any]]:
    """The FastAPI test app over ``live``'s emulators and a new AsyncEngine: an ASGI app."""
    pages = DemoPages(live.idps)

    async def on_complete(request: Request, view: Any) -> Response:
        request.session.clear()  # a new session for the signed-in user (no session fixation)
        request.session["signed_in"] = signed_in(view)
        return RedirectResponse("/", status_code=303)

    engine = live.async_engine()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.aclose()  # the engine's httpx client, in the loop that used it

    router = mfa_router(
        engine,
        secret_key=secrets.token_bytes(32),
        current_user=lambda request: current_user(request.session.get("demo_user")),
        on_complete=on_complete,
        throttle=live.throttle,
        secure_cookies=False,
        aside=functools.partial(demo._aside, live.idps),
        title="mfa_fsm demo",
    )
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32), https_only=False)
    app.mount("/login", router)

    @app.get("/")
    async def home(request: Request) -> Response:
        who = request.session.get("signed_in")
        if not isinstance(who, dict):
            return RedirectResponse("/signin", status_code=303)
        return HTMLResponse(pages.home_page(who))

    @app.get("/signin")
    async def signin_page(request: Request) -> Response:
        return HTMLResponse(pages.signin_page(_signin_token(request)))

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        expected = request.session.get("signin_csrf")
        sent = form.get("csrf_token", "")
        if not isinstance(expected, str) or not hmac.compare_digest(
            sent.encode(), expected.encode()
        ):
            body = pages.signin_page(_signin_token(request), FORM_EXPIRED)
            return HTMLResponse(body, status_code=400)
        user = form.get("user", "")
        provider = pages.check_password(user, form.get("password", ""))
        if provider is None:
            body = pages.signin_page(_signin_token(request), NOT_ACCEPTED)
            return HTMLResponse(body, status_code=401)
        request.session.clear()  # a new session for the signed-in user (no session fixation)
        request.session["demo_user"] = user
        return await router.begin(request, provider)

    @app.get("/emulator")
    async def control(request: Request) -> Response:
        return HTMLResponse(pages.control_page(request.query_params.get("done", "")))

    @app.get("/emulator/state")
    async def control_state() -> dict[str, str]:
        return {"fingerprint": pages.fingerprint()}

    @app.post("/emulator/{provider}/{user}/{action}")
    async def act(request: Request, provider: str, user: str, action: str) -> Response:
        form = await _form(request)
        status, done = pages.act(
            provider, user, action, form.get("token", ""), form.get("number") or None
        )
        if status != 303:
            return PlainTextResponse(done, status_code=status)
        return RedirectResponse("/emulator?" + urlencode({"done": done}), status_code=303)

    return "asgi", app
