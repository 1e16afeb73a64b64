"""The web integration: login pages for web applications, and the demo.

:mod:`mfa_fsm.web.core` holds the pages' logic once, framework-neutral (routes, CSRF, the
flow cookie, throttles, the page of each state, the poll JSON, errors, completion);
``mfa_blueprint(engine, ...)`` (:mod:`mfa_fsm.web.flask`, the ``web`` extra) mounts it in
Flask, ``mfa_router(engine, ...)`` (:mod:`mfa_fsm.web.starlette`, the ``starlette`` extra) in
Starlette and FastAPI; :mod:`mfa_fsm.web.events` turns a page's form into an event for any
provider; :mod:`mfa_fsm.web.demo` is the demo application behind ``mfa-fsm demo``. The web
frameworks are imported on first use. (:mod:`mfa_fsm.web.blueprint` is kept as an alias of
:mod:`mfa_fsm.web.flask`.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfa_fsm.web.flask import mfa_blueprint
    from mfa_fsm.web.starlette import mfa_router

__all__ = ["mfa_blueprint", "mfa_router"]


def __getattr__(name: str) -> Any:
    if name == "mfa_blueprint":
        return importlib.import_module("mfa_fsm.web.flask").mfa_blueprint
    if name == "mfa_router":
        return importlib.import_module("mfa_fsm.web.starlette").mfa_router
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
