"""Test applications of the login pages, one per web framework, with the same face.

Each module has ``make_engine(configs, *, sealed=False, throttle=None)`` (the engine its
framework runs: blocking for Flask, async for Starlette) and ``live(engine, **options)``,
a context manager serving the application over real HTTP on a free loopback port and
yielding its base URL. Every application mounts the pages at :data:`PREFIX` and has a
sign-in of its own, ``POST /app/signin`` (form: ``user``, ``password`` =
:data:`APP_PASSWORD`, optional ``provider``), which makes a new session for the user and
begins their second factor, and ``GET /app/whoami`` (``signed in as <user>`` once
``on_complete`` put the completed login in the session, else 401). ``options`` go to the
framework's mount function (``mfa_blueprint`` / ``mfa_router``) but for ``on_complete``:
``complete="redirect"`` (default: on_complete signs the user in and redirects to
``/app/home``) or ``complete="page"`` (it returns nothing: the library's success page).
``calls`` (a list) receives each view on_complete got.
"""

from __future__ import annotations

PREFIX = "/login"
APP_PASSWORD = "app-password"
FRAMEWORKS = ("flask", "starlette", "django")
