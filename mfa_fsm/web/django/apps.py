"""The Django app of the login pages: ``"mfa_fsm.web.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class MfaFsmConfig(AppConfig):  # type: ignore[misc] # Django ships no type information
    """mfa_fsm's login pages. The app has no models and no migrations: flows live in the
    engine's store; the pages need only Django's sessions and CSRF middleware."""

    name = "mfa_fsm.web.django"
    label = "mfa_fsm"
    verbose_name = "mfa_fsm login pages"
