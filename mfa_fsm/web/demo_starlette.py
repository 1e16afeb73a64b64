"""The demo on FastAPI (``mfa-fsm demo --framework fastapi``): the glue between FastAPI and the
framework-neutral demo pages of :mod:`mfa_fsm.web.demo_pages`.

What a FastAPI application writes to use the login pages, and no more: ``mfa_router(engine,
...)`` mounted at ``/login`` over an :class:`~mfa_fsm.engine.AsyncEngine`, Starlette's
``SessionMiddleware`` for the application's own session (a signed cookie), a sign-in route
that checks the demo application's password (its form carries a synchronizer CSRF token kept
in that session, OWASP CSRF Prevention Cheat Sheet), makes a new session and awaits
``mfa.begin(request, provider)``, an ``on_complete(request, view)`` that makes the signed-in
session and redirects home, and the control page's routes. Served by uvicorn
(:class:`~mfa_fsm.web.demo.Demo` runs it on a thread of its own).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import Response

from mfa_fsm.web import demo_pages
from mfa_fsm.web.demo_pages import DEMO_HEADERS, FORM_EXPIRED, LOGIN, NOT_ACCEPTED, DemoPages
from mfa_fsm.web.starlette import mfa_router

if TYPE_CHECKING:
    from mfa_fsm.core.snapshot import FlowView
    from mfa_fsm.core.throttle import Throttle
    from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine
    from mfa_fsm.testing.demo_idps import DemoIdp

#: The largest form the demo's own routes read (its sign-in and control forms are tiny).
MAX_FORM_BYTES = 8192


async def _form(request: Request) -> dict[str, str]:
    """The request's ``application/x-www-form-urlencoded`` fields (what the demo's forms
    send), read without python-multipart; at most MAX_FORM_BYTES are kept."""
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace")))


def create_app(
    idps: Mapping[str, DemoIdp],
    engine: AsyncEngine | AsyncSealedEngine,
    *,
    throttle: Throttle | Any,
) -> FastAPI:
    """The demo as a FastAPI application over running emulators and an async ``engine``."""
    pages = DemoPages(idps)
    secret = secrets.token_urlsafe(48)  # a new key per run: nothing needs keeping

    def html(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status, headers=dict(DEMO_HEADERS))

    def see_other(location: str) -> RedirectResponse:
        return RedirectResponse(location, status_code=303, headers=dict(DEMO_HEADERS))

    def signin_token(request: Request) -> str:
        token = request.session.get("signin_csrf")
        if not isinstance(token, str):
            token = request.session["signin_csrf"] = demo_pages.new_csrf_token()
        return token

    async def on_complete(request: Request, view: FlowView) -> Response:
        request.session.clear()  # a new session for the signed-in user (no session fixation)
        request.session["signed_in"] = demo_pages.signed_in(view)
        return see_other("/")

    mfa = mfa_router(
        engine,
        secret_key=secret,
        current_user=lambda request: demo_pages.current_user(request.session.get("demo_user")),
        on_complete=on_complete,
        throttle=throttle,
        secure_cookies=False,
        aside=pages.aside,
        title="mfa_fsm demo",
    )
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret, https_only=False)
    app.mount(LOGIN, mfa)

    @app.get("/")
    async def home(request: Request) -> Response:
        who = request.session.get("signed_in")
        if not isinstance(who, dict):
            return see_other("/signin")
        return html(pages.home_page(who))

    @app.get("/signin")
    async def signin_page(request: Request) -> Response:
        return html(pages.signin_page(signin_token(request)))

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        if not demo_pages.same_token(
            form.get("csrf_token", ""), request.session.get("signin_csrf")
        ):
            return html(pages.signin_page(signin_token(request), FORM_EXPIRED), 400)
        user = form.get("user", "")
        provider = pages.check_password(user, form.get("password", ""))
        if provider is None:
            return html(pages.signin_page(signin_token(request), NOT_ACCEPTED), 401)
        request.session.clear()  # a new session for the signed-in user (no session fixation)
        request.session["demo_user"] = user
        return await mfa.begin(request, provider)

    @app.get("/emulator")
    async def control(request: Request) -> Response:
        return html(pages.control_page(request.query_params.get("done", "")))

    @app.get("/emulator/state")
    async def control_state() -> Response:
        return JSONResponse({"fingerprint": pages.fingerprint()}, headers=dict(DEMO_HEADERS))

    @app.post("/emulator/{provider}/{user}/{action}")
    async def act(request: Request, provider: str, user: str, action: str) -> Response:
        form = await _form(request)
        status, done = pages.act(
            provider, user, action, form.get("token", ""), form.get("number") or None
        )
        if status != 303:
            return PlainTextResponse(done, status_code=status, headers=dict(DEMO_HEADERS))
        return see_other("/emulator?" + urlencode({"done": done}))

    return app
