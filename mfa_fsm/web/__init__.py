"""The web integration: login pages for any Flask application, and the demo.

``mfa_blueprint(engine, ...)`` (in :mod:`mfa_fsm.web.blueprint`) mounts one route per step,
with a page for each state of the shared vocabulary; :mod:`mfa_fsm.web.events` turns a page's
form into an event for any provider; :mod:`mfa_fsm.web.demo` is the demo application behind
``mfa-fsm demo``. Flask is needed for the blueprint and the demo only (``mfa_fsm[web]``), so
it is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfa_fsm.web.flask import mfa_blueprint

__all__ = ["mfa_blueprint"]


def __getattr__(name: str) -> Any:
    if name == "mfa_blueprint":
        return importlib.import_module("mfa_fsm.web.flask").mfa_blueprint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
