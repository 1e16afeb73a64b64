"""The demo on Django (``mfa-fsm demo --framework django``): the glue between Django and the
framework-neutral demo pages of :mod:`mfa_fsm.web.demo_pages`.

What a Django project writes to use the login pages, and no more: ``mfa_urls(engine, ...)``
under ``login/``, a sign-in view that checks the demo application's password, makes a new
session and calls ``mfa.begin(request, provider)``, an ``on_complete(request, view)`` that makes
the signed-in session and redirects home, and the control page's views. Django is configured
in code, once per process (``settings.configure``): Django's CSRF middleware, sessions in a
signed cookie (no database), a random ``SECRET_KEY`` per process. Each app built here routes by
its own URLconf (``request.urlconf``, set before Django's middleware runs), so several can run
in one process. Django's settings are global to a process: when something else configured
them first, the demo runs with those (they need sessions and CsrfViewMiddleware).
"""

from __future__ import annotations

import secrets
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import django
from django.conf import settings

from mfa_fsm.web import demo_pages
from mfa_fsm.web.demo_pages import DEMO_HEADERS, NOT_ACCEPTED, DemoPages

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from mfa_fsm.core.snapshot import FlowView
    from mfa_fsm.testing.demo_idps import DemoIdp

#: The hidden field Django's CsrfViewMiddleware reads in a form.
DJANGO_CSRF_FIELD = "csrfmiddlewaretoken"

urlpatterns: list[Any] = []  # ROOT_URLCONF's, never reached: every request carries its own


def configure() -> None:
    """Configure Django for the demo, once per process (a no-op when already configured)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "[::1]"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions", "mfa_fsm.web.django"],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        # The session in a signed cookie: the demo keeps no database.
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        # Plain HTTP on loopback: a Secure cookie would never come back.
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()


def _handler(urls: types.ModuleType) -> Any:
    """Django's WSGI handler for one demo app: its URLconf on every request (Django resolves by
    ``request.urlconf`` when set), and the demo's security headers on its own pages."""
    from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415 - after configure()

    class DemoHandler(WSGIHandler):  # type: ignore[misc]
        def get_response(self, request: HttpRequest) -> HttpResponse:
            request.urlconf = urls
            response: HttpResponse = super().get_response(request)
            for name, value in DEMO_HEADERS:
                response.headers.setdefault(name, value)
            return response

    return DemoHandler()


def create_app(idps: Mapping[str, DemoIdp], engine: Any, *, throttle: Any) -> Callable[..., Any]:
    """The demo as a Django WSGI application over running emulators and ``engine``."""
    configure()
    from django.http import HttpResponse, JsonResponse  # noqa: PLC0415 - after configure()
    from django.middleware.csrf import get_token  # noqa: PLC0415
    from django.urls import path  # noqa: PLC0415
    from django.views.decorators.csrf import csrf_exempt  # noqa: PLC0415

    from mfa_fsm.web.django import mfa_urls  # noqa: PLC0415

    pages = DemoPages(idps)

    def see_other(location: str) -> HttpResponse:
        response = HttpResponse(status=303)
        response["Location"] = location
        return response

    def html(body: str, status: int = 200) -> HttpResponse:
        return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")

    def on_complete(request: HttpRequest, view: FlowView) -> HttpResponse:
        request.session.flush()  # a new session for the signed-in user (no session fixation)
        request.session["signed_in"] = demo_pages.signed_in(view)
        return see_other("/")

    mfa = mfa_urls(
        engine,
        current_user=lambda request: demo_pages.current_user(request.session.get("demo_user")),
        on_complete=on_complete,
        throttle=throttle,
        secure_cookies=False,
        aside=pages.aside,
        title="mfa_fsm demo",
    )

    def home(request: HttpRequest) -> HttpResponse:
        who = request.session.get("signed_in")
        if not isinstance(who, dict):
            return see_other("/signin")
        return html(pages.home_page(who))

    def signin(request: HttpRequest) -> HttpResponse:
        # Django's CsrfViewMiddleware has checked a POST's token before this view runs.
        if request.method == "POST":
            user = request.POST.get("user", "")
            provider = pages.check_password(user, request.POST.get("password", ""))
            if provider is not None:
                request.session.flush()  # a new session for the user (no session fixation)
                request.session["demo_user"] = user
                return mfa.begin(request, provider)
            body = pages.signin_page(get_token(request), NOT_ACCEPTED, DJANGO_CSRF_FIELD)
            return html(body, 401)
        if request.method != "GET":
            return HttpResponse(status=405, headers={"Allow": "GET, POST"})
        return html(pages.signin_page(get_token(request), csrf_field=DJANGO_CSRF_FIELD))

    def control(request: HttpRequest) -> HttpResponse:
        return html(pages.control_page(request.GET.get("done", "")))

    def control_state(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"fingerprint": pages.fingerprint()})

    def act(request: HttpRequest, provider: str, user: str, action: str) -> HttpResponse:
        status, done = pages.act(
            provider,
            user,
            action,
            request.POST.get("token", ""),
            request.POST.get("number") or None,
        )
        if status != 303:
            return HttpResponse(done, status=status, content_type="text/plain")
        return see_other("/emulator?" + urlencode({"done": done}))

    def only(method: str, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        def checked(request: HttpRequest, **params: str) -> HttpResponse:
            if request.method != method:
                return HttpResponse(status=405, headers={"Allow": method})
            return view(request, **params)

        return checked

    urls = types.ModuleType(f"{__name__}.urls_{secrets.token_hex(4)}")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("", only("GET", home)),
        path("signin", signin),
        path("emulator", only("GET", control)),
        path("emulator/state", only("GET", control_state)),
        # The control page's forms carry a token of their own (DemoPages.act checks it).
        path("emulator/<str:provider>/<str:user>/<str:action>", csrf_exempt(only("POST", act))),
        path("login/", mfa.urls),
    ]
    handler: Callable[..., Any] = _handler(urls)
    return handler
