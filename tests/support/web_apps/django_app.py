"""The Django test app: the demo's shape (see :mod:`tests.support.web_apps`) as a Django project.

Django is configured once per process, in code (``settings.configure``): sessions in Django's
cache (``LocMemCache``), Django's own CSRF middleware, no database. Several test apps (with
their own engines) can run side by side in one process: each is a ``WSGIHandler`` whose
requests carry their own URLconf (``request.urlconf``, set by :class:`PerAppUrls`).

The application's code is what a Django project writes to use the login pages:
``mfa_urls(engine, current_user=..., on_complete=...)`` included under ``login/``, a sign-in
view that checks its own password, makes a new session and calls ``mfa.begin(request, ...)``,
and an ``on_complete(request, view)`` that makes the signed-in session and redirects home.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import django
from django.conf import settings

from mfa_fsm import Engine, MemoryStore, SealedEngine, StoreLedger
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.web import demo
from tests.support.web import serve
from tests.support.web_apps import APP_PASSWORD, PREFIX

from .demo_pages import NOT_ACCEPTED, DemoPages, current_user, signed_in

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from . import Kind, LiveApp

#: The WSGI environ key that carries a test app's URLconf to :class:`PerAppUrls`.
URLCONF_KEY = "mfa_fsm.test.urlconf"


def configure() -> None:
    """Configure Django for the test apps, once per process."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,  # never used: every request carries its app's URLconf
        INSTALLED_APPS=["django.contrib.sessions", "mfa_fsm.web.django"],
        MIDDLEWARE=[
            f"{__name__}.PerAppUrls",
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        # Plain HTTP on loopback: a Secure cookie would never come back.
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()


urlpatterns: list[Any] = []  # ROOT_URLCONF's, never reached


class PerAppUrls:
    """Middleware: route a request by the URLconf of the test app that received it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        scope = getattr(request, "scope", None)  # an ASGI request's
        request.urlconf = scope[URLCONF_KEY] if scope else request.META[URLCONF_KEY]
        return self.get_response(request)


def build(live: LiveApp) -> tuple[Kind, Callable[..., Any]]:  # noqa: PLR0915 - one app
    """The Django test app over ``live``'s emulators and a new engine: a WSGI app, or an
    ASGI app with async views over an AsyncEngine when ``live.asynchronous``."""
    configure()
    from asgiref.sync import sync_to_async  # noqa: PLC0415
    from django.core.handlers.asgi import ASGIHandler  # noqa: PLC0415 - after configure()
    from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415
    from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse  # noqa: PLC0415
    from django.middleware.csrf import get_token  # noqa: PLC0415
    from django.urls import path  # noqa: PLC0415
    from django.views.decorators.csrf import csrf_exempt  # noqa: PLC0415

    from mfa_fsm.web.django import mfa_urls  # noqa: PLC0415

    pages = DemoPages(live.idps)

    def on_complete(request: HttpRequest, view: Any) -> HttpResponse:
        request.session.flush()  # a new session for the signed-in user (no session fixation)
        request.session["signed_in"] = signed_in(view)
        return see_other("/")

    async def on_complete_async(request: HttpRequest, view: Any) -> HttpResponse:
        await request.session.aflush()
        await request.session.aset("signed_in", signed_in(view))
        return see_other("/")

    engine = live.async_engine() if live.asynchronous else live.engine()
    if isinstance(engine, AsyncEngine | AsyncSealedEngine):
        live.async_closers.append(engine.aclose)
    mfa = mfa_urls(
        engine,
        current_user=lambda request: current_user(request.session.get("demo_user")),
        on_complete=on_complete_async if live.asynchronous else on_complete,
        throttle=live.throttle,
        secure_cookies=False,
        aside=functools.partial(demo._aside, live.idps),
        title="mfa_fsm demo",
    )

    def see_other(location: str) -> HttpResponse:
        response = HttpResponse(status=303)
        response["Location"] = location
        return response

    def html(body: str, status: int = 200) -> HttpResponse:
        return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")

    def home(request: HttpRequest) -> HttpResponse:
        who = request.session.get("signed_in")
        if not isinstance(who, dict):
            return see_other("/signin")
        return html(pages.home_page(who))

    def signin_page(request: HttpRequest, error: str | None = None, status: int = 200) -> str:
        # The demo's template names its hidden field csrf_token; Django's middleware reads
        # csrfmiddlewaretoken, so the page says that name (the middleware does the check).
        body = pages.signin_page(get_token(request), error)
        return html(body.replace('name="csrf_token"', 'name="csrfmiddlewaretoken"'), status)

    def signin(request: HttpRequest) -> HttpResponse:
        if request.method == "GET":
            return signin_page(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        user = request.POST.get("user", "")
        provider = pages.check_password(user, request.POST.get("password", ""))
        if provider is None:
            return signin_page(request, NOT_ACCEPTED, 401)
        request.session.flush()  # a new session for the signed-in user (no session fixation)
        request.session["demo_user"] = user
        return mfa.begin(request, provider)

    async def signin_async(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return await sync_to_async(signin)(request)
        user = request.POST.get("user", "")
        provider = pages.check_password(user, request.POST.get("password", ""))
        if provider is None:
            return signin_page(request, NOT_ACCEPTED, 401)
        await request.session.aflush()
        await request.session.aset("demo_user", user)
        return await mfa.abegin(request, provider)

    def control(request: HttpRequest) -> HttpResponse:
        return html(pages.control_page(request.GET.get("done", "")))

    @csrf_exempt  # the control page's forms carry a token of their own
    def act(request: HttpRequest, provider: str, user: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        status, done = pages.act(
            provider,
            user,
            action,
            request.POST.get("token", ""),
            request.POST.get("number") or None,
        )
        if status != 303:
            return HttpResponse(done, status=status, content_type="text/plain")
        from urllib.parse import urlencode  # noqa: PLC0415

        return see_other("/emulator?" + urlencode({"done": done}))

    urls = types.ModuleType(f"{__name__}.urls_{secrets.token_hex(4)}")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("", home),
        path("signin", signin_async if live.asynchronous else signin),
        path("emulator", control),
        path("emulator/state", lambda request: JsonResponse({"fingerprint": pages.fingerprint()})),
        path("emulator/<str:provider>/<str:user>/<str:action>", act),
        path("login/", mfa.urls),
    ]
    if live.asynchronous:
        asgi = ASGIHandler()

        async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await asgi(dict(scope, **{URLCONF_KEY: urls}), receive, send)

        return "asgi", asgi_app
    handler = WSGIHandler()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[URLCONF_KEY] = urls
        return handler(environ, start_response)

    return "wsgi", app


# -- the test applications' common face (see the package docs; tests/web/test_frameworks.py) --

SECRET = "test-secret-key-of-enough-length-0123456789"


def make_engine(
    configs: list[object], *, sealed: bool = False, throttle: Throttle | None = None
) -> Engine | SealedEngine:
    """The engine of the Django test app: blocking, as its views (under WSGI)."""
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
) -> Callable[..., Any]:
    """The Django test app of the common face: a WSGI app with its own URLconf."""
    configure()
    from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415 - after configure()
    from django.http import HttpResponse, HttpResponseRedirect  # noqa: PLC0415
    from django.urls import path  # noqa: PLC0415
    from django.views.decorators.csrf import csrf_exempt  # noqa: PLC0415
    from django.views.decorators.http import require_POST  # noqa: PLC0415

    from mfa_fsm.web.django import mfa_urls  # noqa: PLC0415

    seen = calls if calls is not None else []

    def on_complete(request: HttpRequest, view: FlowView) -> HttpResponse | None:
        seen.append(view)
        if complete == "raise":
            raise RuntimeError("the application's on_complete failed")
        assert view.result is not None
        request.session.cycle_key()  # a new session key once both factors passed
        request.session["signed_in"] = view.result.user_id
        return HttpResponseRedirect("/app/home") if complete == "redirect" else None

    def user_of(request: HttpRequest) -> str | None:
        user = request.session.get("user")
        return user if isinstance(user, str) else None

    options.setdefault("current_user", user_of)
    mfa = mfa_urls(engine, on_complete=on_complete, **options)

    @csrf_exempt  # the test's sign-in, as the other frameworks' test apps
    @require_POST
    def signin(request: HttpRequest) -> HttpResponse:
        if request.POST.get("password") != APP_PASSWORD:
            return HttpResponse("wrong password", status=401, content_type="text/plain")
        request.session.flush()
        request.session["user"] = request.POST["user"]
        return mfa.begin(request, request.POST.get("provider") or None)

    def whoami(request: HttpRequest) -> HttpResponse:
        user = request.session.get("signed_in")
        if user:
            return HttpResponse(f"signed in as {user}", content_type="text/plain")
        return HttpResponse("not signed in", status=401, content_type="text/plain")

    def home(request: HttpRequest) -> HttpResponse:
        return HttpResponse("home", content_type="text/plain")

    urls = types.ModuleType(f"{__name__}.urls_{secrets.token_hex(4)}")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path("app/signin", signin),
        path("app/whoami", whoami),
        path("app/home", home),
        path(PREFIX.strip("/") + "/", mfa.urls),
    ]
    handler = WSGIHandler()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[URLCONF_KEY] = urls
        return handler(environ, start_response)

    return app


@contextlib.contextmanager
def live(engine: Engine | SealedEngine, **options: Any) -> Iterator[str]:
    with serve(make_app(engine, **options)) as base:
        yield base
