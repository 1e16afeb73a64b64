"""The login pages' Django views: each turns a Django request into the core's
:class:`~mfa_fsm.web.core.PageRequest`, runs the core's plan, and turns its answer back.

Everything the pages do (which page each state gets, the flow cookie, throttles, the poll
JSON, recovery, errors, security headers) is :mod:`mfa_fsm.web.core`'s; what this module
adds is Django's own conventions:

* **CSRF is Django's.** Every view is checked by Django's ``CsrfViewMiddleware`` (its
  ``process_view``, run by the view as ``csrf_protect`` runs it, so also in a project that
  left the middleware out; ``csrf_exempt`` keeps the middleware from checking twice); the
  core's own check is off, and the forms carry Django's token (``csrfmiddlewaretoken``, from
  ``get_token``). The pages' polling script sends the token as ``X-CSRF-Token``; it is handed
  to Django's check as the header it reads (``settings.CSRF_HEADER_NAME``, ``X-CSRFToken``
  by default). A refused token answers 400 with the pages' own problem page (JSON to the
  script), as in the other frameworks, rather than ``settings.CSRF_FAILURE_VIEW``.
* **The signed-in user is the application's**: ``current_user(request)`` reads it, from the
  session (``request.session``) or ``request.user``; it may return a
  :class:`~mfa_fsm.core.identity.VerifiedUser`, a user id, or ``None``.
* **Completion is the application's**: ``on_complete(request, view)`` gets the completed
  :class:`~mfa_fsm.core.snapshot.FlowView` (``view.result``: whom the IdP confirmed) and
  returns an ``HttpResponse`` (typically: make its own session, redirect home). A page
  request gets that response (with the flow's cookies added); the page's polling script gets
  ``{"location": ...}`` JSON pointing where it redirects, with its cookies.
* The flow cookie is signed with ``settings.SECRET_KEY`` (read per request, so key rotation
  applies).

Blocking or async views, by the engine. Over an ``Engine`` or ``SealedEngine`` the views block
on the IdP's HTTP call, as Django's ORM, sessions and most middleware do: serve the project
with a WSGI server (gunicorn with threads) like every other Django view. Over an
``AsyncEngine`` or ``AsyncSealedEngine`` they are async views (the same core plans, awaited):
serve the project under ASGI (uvicorn, daphne), and a page waiting on the IdP holds no thread.
Then start flows with ``await mfa.abegin(request, ...)``, and ``current_user`` and
``on_complete`` may be coroutines (use the session's async methods there, ``aget``, ``aset``,
``aflush``: a database session backend refuses blocking calls in an async view).
"""

from __future__ import annotations

import functools
import inspect
import mimetypes
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.urls import URLPattern, path, re_path, reverse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.plans import run, run_async
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine, Engine, SealedEngine
from mfa_fsm.web.core import (
    ROUTES,
    SECURITY_HEADERS,
    STATIC_DIR,
    STATIC_PATH,
    AppAnswer,
    PageAnswer,
    PageRequest,
    WebCore,
)

#: The hidden form field Django's CsrfViewMiddleware reads.
CSRF_FIELD = "csrfmiddlewaretoken"
#: The heading of the page (400) for a step Django's CSRF check refused.
CSRF_REFUSED = "The form has expired: reload the page and try again"

#: The methods each route takes (any other is the core's 405, an unknown path its 404).
_METHODS = {route.name: route.methods for route in ROUTES}

OnComplete = Callable[[HttpRequest, FlowView], Any]
CurrentUser = Callable[[HttpRequest], Any]


def _django_path(route_path: str) -> str:
    """A core route path (Starlette syntax, ``/f/{handle}``) as a Django ``path()`` route."""
    return route_path.lstrip("/").replace("{", "<str:").replace("}", ">")


class MfaUrls:
    """The login pages for one engine: ``path("login/", mfa.urls)`` (as Django's admin), and
    :meth:`begin` for the application's own sign-in view. Built by :func:`mfa_urls`."""

    app_name = "mfa_fsm"

    def __init__(
        self,
        engine: Engine | SealedEngine | AsyncEngine | AsyncSealedEngine,
        *,
        on_complete: OnComplete | None = None,
        current_user: CurrentUser | None = None,
        namespace: str = "mfa_fsm",
        **options: Any,
    ) -> None:
        self.core = WebCore(
            engine,
            secret_key=lambda: settings.SECRET_KEY,
            current_user=current_user is not None,
            **options,
        )
        self.on_complete = on_complete
        self.current_user = current_user
        self.namespace = namespace
        self._static: dict[str, tuple[bytes, str]] = {}
        #: The views are async (awaiting the engine) for an AsyncEngine / AsyncSealedEngine.
        self.is_async = isinstance(engine, AsyncEngine | AsyncSealedEngine)
        # Django's CSRF check, run by the views themselves (see _checked).
        self._csrf = CsrfViewMiddleware(_unused_get_response)

    def _guarded(self, route: str) -> Callable[..., Any]:
        """The view of ``route``: :meth:`_checked` first, then the core; an async view for
        an AsyncEngine / AsyncSealedEngine, a blocking one otherwise."""
        if self.is_async:

            async def view_async(request: HttpRequest, **params: str) -> HttpResponse:
                refused = self._checked(request, route, params)
                if refused is not None:
                    return refused
                page = self._page_request(request, route, params)
                answer = await run_async(self.core.handle(page))
                try:
                    response = await self._respond_async(request, answer)
                except Exception as exc:  # on_complete failed: the pages' 500, logged
                    response = _response(self.core.server_error(page, exc))
                return self._csrf_cookie(request, response)

            # Checked by _checked; the middleware would check before the header's copy.
            return csrf_exempt(view_async)  # type: ignore[no-any-return]

        def view(request: HttpRequest, **params: str) -> HttpResponse:
            refused = self._checked(request, route, params)
            if refused is not None:
                return refused
            page = self._page_request(request, route, params)
            answer = run(self.core.handle(page))
            try:
                response = self._respond(request, answer)
            except Exception as exc:  # on_complete failed: the pages' 500, logged
                response = _response(self.core.server_error(page, exc))
            return self._csrf_cookie(request, response)

        return csrf_exempt(view)  # type: ignore[no-any-return]

    def _checked(
        self, request: HttpRequest, route: str, params: Mapping[str, str]
    ) -> HttpResponse | None:
        """``None`` for a request the pages may handle, else the refusal: 413 for a body
        over ``max_form_bytes`` (before anything reads it), 400 (the core's page; JSON to
        the pages' script) when Django's CSRF check refuses it. A method the route does not
        take, or a path that is none of the pages', goes to the core's 405 or 404 unchecked
        (it changes nothing).

        The check is Django's ``CsrfViewMiddleware`` (its ``process_view``, as
        ``csrf_protect`` runs it, so also in a project that left the middleware out). The
        token of the pages' script (``X-CSRF-Token``) or of a form field named
        ``csrf_token`` (an application's template override) is handed to it as the header it
        reads (``settings.CSRF_HEADER_NAME``)."""
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > self.core.max_form_bytes:
            page = self._page_request(request, route, params, form=False)
            return _response(self.core.refuse(page, 413))
        if request.method not in _METHODS.get(route, ()):
            return None  # the core answers 404 or 405 and does nothing else
        sent = request.META.get("HTTP_X_CSRF_TOKEN")
        if not sent and request.method == "POST" and CSRF_FIELD not in request.POST:
            sent = request.POST.get("csrf_token")
        if sent and settings.CSRF_HEADER_NAME not in request.META:
            request.META[settings.CSRF_HEADER_NAME] = sent
        if "CSRF_COOKIE" not in request.META:  # the middleware is not installed
            self._csrf.process_request(request)
        if self._csrf.process_view(request, None, (), {}) is None:
            return None
        page = self._page_request(request, route, params, form=False)
        return self._csrf_cookie(request, _response(self.core.refuse(page, 400, CSRF_REFUSED)))

    def _csrf_cookie(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Django's CSRF cookie on ``response`` when the page made a new token (what the
        middleware's ``process_response`` does; it does nothing the second time)."""
        result: HttpResponse = self._csrf.process_response(request, response)
        return result

    @property
    def patterns(self) -> list[URLPattern]:
        """The URL patterns of the pages (each core route, the static files, and a 404 for
        anything else under the prefix)."""
        found = [
            path(_django_path(route.path), self._guarded(route.name), name=route.name)
            for route in ROUTES
        ]
        found.append(path(f"{STATIC_PATH.lstrip('/')}/<str:filename>", self._file, name="static"))
        found.append(re_path(r"^.*$", self._guarded("not_found")))
        return found

    @property
    def urls(self) -> tuple[list[URLPattern], str, str]:
        """For ``path("login/", mfa.urls)``: the patterns, the app name
        (``"mfa_fsm"``) and the instance namespace (``reverse("mfa_fsm:start_page")``)."""
        return self.patterns, self.app_name, self.namespace

    def begin(
        self, request: HttpRequest, provider: str | None = None, **options: Any
    ) -> HttpResponse:
        """Start a flow for the application's signed-in user (``current_user(request)``) and
        answer with a 303 into it; call it from the application's own sign-in view once it
        has checked the first factor (and made a new session). ``options`` go to the
        provider's ``start`` (e.g. ``factor="PUSH"``). Raises VerifiedUserRequired when
        ``current_user`` returns nobody, UsageError for an unknown ``provider``; IdP,
        network and throttle failures become pages."""
        if self.is_async:
            raise UsageError("this engine is asynchronous: await mfa.abegin(request, ...)")
        page = self._page_request(request, "begin", {})
        return self._respond(request, run(self.core.begin(page, provider, options)))

    async def abegin(
        self, request: HttpRequest, provider: str | None = None, **options: Any
    ) -> HttpResponse:
        """:meth:`begin` for an AsyncEngine / AsyncSealedEngine, from an async view."""
        if not self.is_async:
            raise UsageError("this engine blocks: call mfa.begin(request, ...)")
        page = self._page_request(request, "begin", {})
        answer = await run_async(self.core.begin(page, provider, options))
        return await self._respond_async(request, answer)

    # -- views -------------------------------------------------------------------------------

    def _file(self, request: HttpRequest, filename: str) -> HttpResponse:
        """A static file of the pages (CSS, the polling script), from the package; only the
        files of :data:`~mfa_fsm.web.core.STATIC_DIR` (names, never paths)."""
        if not self._static:
            for file in STATIC_DIR.iterdir():
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                self._static[file.name] = (file.read_bytes(), kind)
        found = self._static.get(filename)
        if found is None or request.method not in ("GET", "HEAD"):
            page = self._page_request(request, "not_found", {}, form=False)
            return _response(self.core.refuse(page, 404))
        body, kind = found
        response = HttpResponse(body, content_type=kind)
        for name, value in SECURITY_HEADERS:
            response[name] = value
        response["Cache-Control"] = "no-cache"  # revalidated, as Flask and Starlette serve it
        return response

    # -- translation -------------------------------------------------------------------------

    def _mount(self) -> str:
        """The pages' URL prefix, as Django reverses it (the include's prefix, and the
        SCRIPT_NAME of a project served under a sub-path)."""
        start: str = reverse(f"{self.namespace}:start_page")
        return start.rstrip("/")

    def _page_request(
        self, request: HttpRequest, route: str, params: Mapping[str, str], *, form: bool = True
    ) -> PageRequest:
        current_user = self.current_user
        # The browser's CSRF secret as it sent it (the middleware's process_request read it),
        # before get_token() below can make one, and before on_complete's login() rotates
        # it: a browser repeating the request whose reply it lost still sends this one.
        browser = request.META.get("CSRF_COOKIE")
        return PageRequest(
            method=request.method or "GET",
            route=route,
            mount=self._mount(),
            params=dict(params),
            form=[(k, v) for k, values in request.POST.lists() for v in values] if form else (),
            headers={name.lower(): value for name, value in request.headers.items()},
            cookies=dict(request.COOKIES),
            client_ip=request.META.get("REMOTE_ADDR"),
            secure=request.is_secure(),
            user=None if current_user is None else functools.partial(current_user, request),
            framework_csrf=(CSRF_FIELD, get_token(request)),
            browser=browser if isinstance(browser, str) else None,
        )

    def _respond(self, request: HttpRequest, answer: PageAnswer) -> HttpResponse:
        if answer.complete is None:
            return _response(answer)
        app = None if self.on_complete is None else self.on_complete(request, answer.complete)
        if inspect.isawaitable(app):
            if inspect.iscoroutine(app):
                app.close()
            raise UsageError(
                "on_complete is asynchronous and this engine blocks: give a plain function, "
                "or an AsyncEngine"
            )
        return self._completed(answer, app)

    async def _respond_async(self, request: HttpRequest, answer: PageAnswer) -> HttpResponse:
        if answer.complete is None:
            return _response(answer)
        app = None if self.on_complete is None else self.on_complete(request, answer.complete)
        if inspect.isawaitable(app):
            app = await app
        return self._completed(answer, app)

    def _completed(self, answer: PageAnswer, app: HttpResponse | None) -> HttpResponse:
        """The answer to a request that completed a flow, once ``on_complete`` answered."""
        answer = self.core.finish(answer, None if app is None else _app_answer(app))
        if answer.use_app and app is not None:
            return _merged(app, answer)
        return _response(answer)


def _unused_get_response(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only the CSRF middleware's hooks are called")


def _response(answer: PageAnswer) -> HttpResponse:
    return _merged(HttpResponse(answer.body, status=answer.status), answer, replace=True)


def _app_answer(response: HttpResponse) -> AppAnswer:
    cookies = [morsel.OutputString() for morsel in response.cookies.values()]
    return AppAnswer(response.status_code, response.get("Location"), cookies)


def _merged(response: HttpResponse, answer: PageAnswer, *, replace: bool = False) -> HttpResponse:
    """``response`` with ``answer``'s headers: its ``Set-Cookie`` values added to Django's
    cookies, the others set (``replace``) or set where ``response`` has none."""
    for name, value in answer.headers:
        if name.lower() == "set-cookie":
            # Django writes each of response.cookies as one Set-Cookie header.
            response.cookies.load(value)
        elif replace or name not in response:
            response[name] = value
    return response


def mfa_urls(
    engine: Engine | SealedEngine | AsyncEngine | AsyncSealedEngine,
    *,
    on_complete: OnComplete | None = None,
    current_user: CurrentUser | None = None,
    namespace: str = "mfa_fsm",
    **options: Any,
) -> MfaUrls:
    """The login pages for ``engine`` (an :class:`~mfa_fsm.engine.Engine` or
    :class:`~mfa_fsm.engine.SealedEngine`), to include under a prefix::

        mfa = mfa_urls(engine, current_user=current_user, on_complete=signed_in)
        urlpatterns = [path("login/", mfa.urls)]

    ``on_complete(request, view)`` answers a completed login with an ``HttpResponse`` (or
    ``None``, or nothing given: the pages' own "you are signed in" page);
    ``current_user(request)`` returns the application's signed-in user (a VerifiedUser, a
    user id, or ``None``), required when a provider's first factor is the application's.
    ``namespace``: the URL namespace (``reverse("mfa_fsm:start_page")``); ``options`` are the
    core's (:class:`~mfa_fsm.web.core.WebCore`: ``secure_cookies``, ``throttle``, ``title``,
    ``aside``, ``template_dirs``, limits ...). Raises VerifiedUserRequired, UsageError as
    the core does.
    """
    return MfaUrls(
        engine, on_complete=on_complete, current_user=current_user, namespace=namespace, **options
    )


def from_settings() -> MfaUrls:
    """The pages configured by ``settings.MFA_FSM`` (see :mod:`mfa_fsm.web.django.urls`)."""
    config = getattr(settings, "MFA_FSM", None)
    if not isinstance(config, Mapping) or "ENGINE" not in config:
        raise ImproperlyConfigured(
            "include('mfa_fsm.web.django.urls') reads settings.MFA_FSM = {'ENGINE': "
            "'<dotted path of an Engine>', 'ON_COMPLETE': '<dotted path of on_complete"
            "(request, view)>', 'CURRENT_USER': '<dotted path of current_user(request)>', "
            "'OPTIONS': {...}} (ENGINE is required, the others optional); or build the URLs "
            "with mfa_fsm.web.django.mfa_urls(engine, ...)"
        )

    def load(key: str) -> Any:
        try:
            return import_string(config[key])
        except ImportError as exc:
            raise ImproperlyConfigured(f"settings.MFA_FSM[{key!r}]: {exc}") from exc

    return mfa_urls(
        load("ENGINE"),
        on_complete=load("ON_COMPLETE") if config.get("ON_COMPLETE") else None,
        current_user=load("CURRENT_USER") if config.get("CURRENT_USER") else None,
        **dict(config.get("OPTIONS", {})),
    )
