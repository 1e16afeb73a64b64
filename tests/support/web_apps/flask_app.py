"""The Flask test application (see the package docs): mfa_blueprint over Engine/SealedEngine,
served by werkzeug's threaded server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flask import Flask, redirect, request, session
from werkzeug.wrappers import Response

from mfa_fsm import Engine, MemoryStore, SealedEngine, StoreLedger
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.web.flask import mfa_blueprint
from tests.support.web import serve
from tests.support.web_apps import APP_PASSWORD, PREFIX

SECRET = "test-secret-key-of-enough-length-0123456789"


def make_engine(
    configs: list[object], *, sealed: bool = False, throttle: Throttle | None = None
) -> Engine | SealedEngine:
    if sealed:
        state = SealedState({"k1": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
        return SealedEngine(state, configs, throttle=throttle)
    return Engine(MemoryStore(), configs, throttle=throttle)


def make_app(
    engine: Engine | SealedEngine,
    *,
    complete: str = "redirect",
    calls: list[FlowView] | None = None,
    **options: Any,
) -> Flask:
    app = Flask(__name__)
    app.secret_key = SECRET
    seen = calls if calls is not None else []

    def on_complete(view: FlowView) -> Response | None:
        seen.append(view)
        if complete == "raise":
            raise RuntimeError("the application's on_complete failed")
        assert view.result is not None
        session["signed_in"] = view.result.user_id
        return redirect("/app/home") if complete == "redirect" else None

    options.setdefault("current_user", lambda: session.get("user"))
    bp = mfa_blueprint(engine, on_complete=on_complete, **options)
    app.register_blueprint(bp, url_prefix=PREFIX)

    @app.post("/app/signin")
    def signin() -> Response | tuple[str, int]:
        if request.form.get("password") != APP_PASSWORD:
            return "wrong password", 401
        session.clear()
        session["user"] = request.form["user"]
        return bp.begin(request.form.get("provider") or None)

    @app.get("/app/whoami")
    def whoami() -> tuple[str, int]:
        user = session.get("signed_in")
        return (f"signed in as {user}", 200) if user else ("not signed in", 401)

    @app.get("/app/home")
    def home() -> str:
        return "home"

    return app


@contextlib.contextmanager
def live(engine: Engine | SealedEngine, **options: Any) -> Iterator[str]:
    with serve(make_app(engine, **options)) as base:
        yield base
