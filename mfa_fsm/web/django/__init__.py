"""The login pages as a Django app: Django's CSRF middleware, its sessions, plain views.

::

    # settings.py
    INSTALLED_APPS = [..., "django.contrib.sessions", "mfa_fsm.web.django"]
    MIDDLEWARE = [..., "django.contrib.sessions.middleware.SessionMiddleware",
                  "django.middleware.csrf.CsrfViewMiddleware", ...]

    # urls.py
    from mfa_fsm.web.django import mfa_urls
    mfa = mfa_urls(engine, current_user=current_user, on_complete=signed_in)
    urlpatterns = [path("login/", mfa.urls), path("signin", signin), ...]

or configured from settings (``MFA_FSM``, see :mod:`mfa_fsm.web.django.urls`). See
:mod:`mfa_fsm.web.django.views` for what each piece does.
"""

from __future__ import annotations

from mfa_fsm.web.django.views import MfaUrls, mfa_urls

__all__ = ["MfaUrls", "mfa_urls"]
