"""Kept for compatibility: the Flask blueprint now lives in :mod:`mfa_fsm.web.flask`, over
the framework-neutral :mod:`mfa_fsm.web.core`. Import from there in new code."""

from __future__ import annotations

from mfa_fsm.web.core import FAILURES, NOT_ACCEPTED, STATE_TEMPLATES, THROTTLED, Carry
from mfa_fsm.web.flask import CurrentUser, MfaBlueprint, OnComplete, mfa_blueprint

__all__ = [
    "FAILURES",
    "NOT_ACCEPTED",
    "STATE_TEMPLATES",
    "THROTTLED",
    "Carry",
    "CurrentUser",
    "MfaBlueprint",
    "OnComplete",
    "mfa_blueprint",
]
