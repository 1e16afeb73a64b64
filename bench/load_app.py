"""The login pages as apps for real servers, configured from the environment: Flask (WSGI,
for gunicorn) and FastAPI (ASGI, for uvicorn), the same pages, sign-in and Redis.

Used by ``bench/load.py``: every worker process builds the same app, so the secret key, the
Redis URL and the emulator's address come from the environment, never from memory::

    MFA_LOAD_SECRET=... MFA_LOAD_REDIS=redis://127.0.0.1:6379/0 \\
    MFA_LOAD_ENTRUST_URL=http://127.0.0.1:8701 MFA_LOAD_ENTRUST_APP=... \\
    gunicorn 'bench.load_app:create()'            # or
    uvicorn --factory bench.load_app:create_asgi
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any
from urllib.parse import parse_qsl

import redis
import structlog
from flask import Flask, request, session
from flask.typing import ResponseReturnValue

from mfa_fsm import Engine, EntrustConfig
from mfa_fsm.core.throttle import DEFAULT_RATES, Throttle
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.web.blueprint import mfa_blueprint

APP_PASSWORD = "load-app-password"  # noqa: S105 - the load run's own fixture


def _setup(storage_scheme: str = "") -> tuple[EntrustConfig, Throttle]:
    """Logging, the Entrust configuration and the throttles, from the environment; the
    throttles' storage is the same Redis, through ``storage_scheme`` (``"async+"``: limits'
    asyncio storage, awaited by the async engine)."""
    # An application configures logging, the library never does: warnings only, as JSON.
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    config = EntrustConfig(
        base_url=os.environ["MFA_LOAD_ENTRUST_URL"],
        application_id=os.environ["MFA_LOAD_ENTRUST_APP"],
        poll_interval=float(os.environ.get("MFA_LOAD_POLL_INTERVAL", "0.2")),
    )
    # A load run is automation by design: the throttles count in Redis (their cost is part of
    # the figures) at rates far above what the run reaches.
    many = "100000/minute"
    storage = storage_scheme + os.environ["MFA_LOAD_REDIS"]
    throttle = Throttle(storage, **dict.fromkeys(DEFAULT_RATES, many))
    return config, throttle


def create() -> Flask:
    """The WSGI app: the mfa_fsm blueprint over an Engine with the Redis store."""
    config, throttle = _setup()
    store = RedisStore(redis.Redis.from_url(os.environ["MFA_LOAD_REDIS"]))
    app = Flask(__name__)
    app.secret_key = os.environ["MFA_LOAD_SECRET"].encode()
    login = mfa_blueprint(
        Engine(store, [config]),
        current_user=lambda: session.get("user"),
        throttle=throttle,
        secure_cookies=False,
    )
    app.register_blueprint(login, url_prefix="/login")

    @app.post("/signin")
    def signin() -> ResponseReturnValue:
        # The application's own first factor (one password for every load user).
        if not hmac.compare_digest(request.form.get("password", ""), APP_PASSWORD):
            return "not accepted", 401
        session.clear()
        session["user"] = request.form["user"]
        return login.begin("entrust")

    return app


def create_asgi() -> Any:
    """The ASGI app: FastAPI with the Starlette adapter's router over an AsyncEngine with the
    async Redis store, the same sign-in (Starlette's signed-cookie session)."""
    import redis.asyncio  # noqa: PLC0415 - the FastAPI app only
    from fastapi import FastAPI, Request  # noqa: PLC0415
    from fastapi.responses import PlainTextResponse, Response  # noqa: PLC0415
    from starlette.middleware.sessions import SessionMiddleware  # noqa: PLC0415

    from mfa_fsm.engine import AsyncEngine  # noqa: PLC0415
    from mfa_fsm.stores.redis_async import AsyncRedisStore  # noqa: PLC0415
    from mfa_fsm.web.starlette import mfa_router  # noqa: PLC0415

    config, throttle = _setup("async+")  # counted in Redis without blocking the event loop
    secret = os.environ["MFA_LOAD_SECRET"]
    store = AsyncRedisStore(redis.asyncio.Redis.from_url(os.environ["MFA_LOAD_REDIS"]))
    login = mfa_router(
        AsyncEngine(store, [config]),
        secret_key=secret,
        current_user=lambda request: request.session.get("user"),
        throttle=throttle,
        secure_cookies=False,
    )
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret, https_only=False)
    app.mount("/login", login)

    async def signin(request: Request) -> Response:
        # The application's own first factor (one password for every load user); the form
        # is url-encoded, read without python-multipart.
        form = dict(parse_qsl((await request.body()).decode()))
        if not hmac.compare_digest(form.get("password", ""), APP_PASSWORD):
            return PlainTextResponse("not accepted", status_code=401)
        request.session.clear()
        request.session["user"] = form.get("user", "")
        return await login.begin(request, "entrust")

    # A Starlette route (the request is its one argument): FastAPI would read the annotations
    # of a function defined here as strings it cannot resolve.
    app.add_route("/signin", signin, methods=["POST"])
    return app
