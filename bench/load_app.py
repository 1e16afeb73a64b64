"""The login pages as a WSGI app for a real server (gunicorn), configured from the environment.

Used by ``bench/load.py``: every worker process builds the same app, so the secret key, the
Redis URL and the emulator's address come from the environment, never from memory::

    MFA_LOAD_SECRET=... MFA_LOAD_REDIS=redis://127.0.0.1:6379/0 \\
    MFA_LOAD_ENTRUST_URL=http://127.0.0.1:8701 MFA_LOAD_ENTRUST_APP=... \\
    gunicorn 'bench.load_app:create()'
"""

from __future__ import annotations

import hmac
import logging
import os

import redis
import structlog
from flask import Flask, request, session
from flask.typing import ResponseReturnValue

from mfa_fsm import Engine, EntrustConfig
from mfa_fsm.core.throttle import DEFAULT_RATES, Throttle
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.web.blueprint import mfa_blueprint

APP_PASSWORD = "load-app-password"  # noqa: S105 - the load run's own fixture


def create() -> Flask:
    """The app: the mfa_fsm blueprint over an Engine with the Redis store."""
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
    store = RedisStore(redis.Redis.from_url(os.environ["MFA_LOAD_REDIS"]))
    # A load run is automation by design: the throttles count in Redis (their cost is part of
    # the figures) at rates far above what the run reaches.
    many = "100000/minute"
    throttle = Throttle(
        os.environ["MFA_LOAD_REDIS"],
        **dict.fromkeys(DEFAULT_RATES, many),
    )
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
