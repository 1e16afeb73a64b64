"""The login pages configured from settings, for ``include("mfa_fsm.web.django.urls")``.

::

    # settings.py
    MFA_FSM = {
        "ENGINE": "myproject.mfa.engine",              # dotted path to an Engine / SealedEngine
        "ON_COMPLETE": "myproject.views.signed_in",    # on_complete(request, view)
        "CURRENT_USER": "myproject.views.current_user",  # optional: current_user(request)
        "OPTIONS": {"title": "Sign in to My Project"},   # optional: mfa_urls' other arguments
    }
    # urls.py
    urlpatterns = [path("login/", include("mfa_fsm.web.django.urls"))]

The engine and callables are imported when Django first loads the URLconf. Raises
django.core.exceptions.ImproperlyConfigured when ``MFA_FSM`` or one of its paths is missing.
"""

from __future__ import annotations

from mfa_fsm.web.django.views import from_settings

_mfa = from_settings()
app_name = _mfa.app_name
urlpatterns = _mfa.patterns
