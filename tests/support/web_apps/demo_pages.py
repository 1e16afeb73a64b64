"""The demo application's own pages, framework-neutral, for the test apps of every framework:
the package's :mod:`mfa_fsm.web.demo_pages` (what ``mfa-fsm demo --framework`` serves), under
the names the test apps import."""

from __future__ import annotations

from mfa_fsm.web.demo_pages import (
    FORM_EXPIRED,
    LOGIN,
    NOT_ACCEPTED,
    DemoPages,
    current_user,
    render,
    signed_in,
    url_for,
)

__all__ = [
    "FORM_EXPIRED",
    "LOGIN",
    "NOT_ACCEPTED",
    "DemoPages",
    "current_user",
    "render",
    "signed_in",
    "url_for",
]
