"""The login pages as a Starlette ``Router`` (FastAPI mounts it too), over the async engine.

::

    engine = AsyncEngine(AsyncRedisStore(...), [EntrustConfig(...)])
    mfa = mfa_router(
        engine,
        secret_key=SECRET,                                    # signs the pages' cookies
        current_user=lambda request: request.session.get("user"),
        on_complete=signed_in,                                # (request, view) -> Response | None
    )
    app = FastAPI()                                           # or Starlette()
    app.add_middleware(SessionMiddleware, secret_key=SECRET)  # the application's own session
    app.mount("/login", mfa)

    @app.post("/signin")                                      # the application's own password check
    async def signin(request: Request) -> Response:
        ...                                                   # check the password, then:
        request.session.clear(); request.session["user"] = user_id
        return await mfa.begin(request, "entrust")            # 303 into the second factor

Every page, error and rule is the framework-neutral core's (:mod:`mfa_fsm.web.core`; the
README's Web section): this module turns a Starlette request into a
:class:`~mfa_fsm.web.core.PageRequest`, runs the core's plan with ``plans.run_async`` (every
store and IdP call awaited: a push being polled holds no thread), and sends the answer.
``current_user(request)`` and ``on_complete(request, view)`` may be plain or ``async``
functions. The client address is ``request.client.host`` (uvicorn's ``--proxy-headers``
and ``--forwarded-allow-ips`` decide it behind a proxy). Forms are read as
``application/x-www-form-urlencoded`` (what the pages send), at most ``max_form_bytes``;
python-multipart is not needed. Mount the router without a ``name`` (``app.mount("/login",
mfa)``) so :meth:`MfaRouter.begin` finds its URL.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, NoMatchFound, Route, Router
from starlette.staticfiles import StaticFiles

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.plans import run_async
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.web import core as web_core
from mfa_fsm.web.core import ROUTES, STATIC_DIR, STATIC_PATH, AppAnswer, PageAnswer, PageRequest

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope, Send

    from mfa_fsm.core.throttle import Throttle
    from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine

OnComplete = Callable[[Request, FlowView], "Response | Awaitable[Response | None] | None"]
CurrentUser = Callable[[Request], Any]
_SECURITY = [(k.lower().encode(), v.encode()) for k, v in web_core.SECURITY_HEADERS]


#: Every method reaches the core, which answers 405 (with Allow) where a route takes none.
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class _TooLarge(Exception):
    """A body over ``max_form_bytes`` or with too many fields."""


class MfaRouter(Router):
    """The router :func:`mfa_router` returns: a Starlette ``Router`` with :meth:`begin`;
    ``core`` is its :class:`~mfa_fsm.web.core.WebCore`. Every answer under it (the core's,
    the static files', Starlette's own) carries the security headers and no-store."""

    core: web_core.WebCore
    _name: str
    _current_user: CurrentUser | None
    _on_complete: OnComplete | None

    async def begin(
        self, request: Request, provider: str | None = None, **options: Any
    ) -> Response:
        """Start a flow for ``current_user(request)`` and answer with a 303 into it (see
        :meth:`mfa_fsm.web.flask.MfaBlueprint.begin`); call it from the application's own
        view after its own first-factor check. Raises VerifiedUserRequired when nobody is
        signed in and UsageError for an unknown provider or a router it cannot find."""
        try:
            mount = str(request.app.url_path_for(f"{self._name}:start_page")).rstrip("/")
        except NoMatchFound:
            raise UsageError(
                "begin() cannot find the login router: mount it without a name, e.g. "
                "app.mount('/login', mfa_router(...))"
            ) from None
        page_request = self._request(request, "begin", form=(), mount=mount)
        return await self._answer(
            request, await run_async(self.core.begin(page_request, provider, options))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A static file keeps revalidated caching (as Flask serves it); all else no-store.
        static = STATIC_PATH + "/" in scope.get("path", "")

        async def covered(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-cache"))
                    names.add(b"cache-control")
                headers += [(k, v) for k, v in _SECURITY if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, covered)

    def _request(
        self,
        request: Request,
        route: str,
        *,
        form: Sequence[tuple[str, str]],
        mount: str | None = None,
    ) -> PageRequest:
        current_user = self._current_user
        return PageRequest(
            method=request.method,
            route=route,
            mount=request.scope.get("root_path", "").rstrip("/") if mount is None else mount,
            params={k: str(v) for k, v in request.path_params.items()},
            form=form,
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=dict(request.cookies),
            client_ip=request.client.host if request.client else None,
            secure=request.url.scheme == "https",
            user=None if current_user is None else lambda: current_user(request),
        )

    async def _form(self, request: Request) -> list[tuple[str, str]]:
        if request.method not in ("POST", "PUT", "PATCH"):
            return []
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.core.max_form_bytes:
                raise _TooLarge
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return []  # the pages post urlencoded forms; a script's poll has no body
        try:
            text = body.decode("utf-8")
            return parse_qsl(text, keep_blank_values=True, max_num_fields=web_core.MAX_FORM_PARTS)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _TooLarge from exc

    def _endpoint(self, route: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                form = await self._form(request)
            except _TooLarge:
                page = self.core.refuse(self._request(request, route, form=()), 413)
                return _response(page)
            page_request = self._request(request, route, form=form)
            page = await run_async(self.core.handle(page_request))
            try:
                return await self._answer(request, page)
            except Exception as exc:  # on_complete failed: the pages' 500, logged
                return _response(self.core.server_error(page_request, exc))

        return endpoint

    async def _answer(self, request: Request, page: PageAnswer) -> Response:
        if page.complete is None:
            return _response(page)
        custom: Response | None = None
        if self._on_complete is not None:
            answered = self._on_complete(request, page.complete)
            custom = await answered if inspect.isawaitable(answered) else answered
        if custom is None:
            return _response(self.core.finish(page, None))
        cookies = [v.decode("latin-1") for k, v in custom.raw_headers if k == b"set-cookie"]
        app = AppAnswer(custom.status_code, custom.headers.get("location"), cookies)
        page = self.core.finish(page, app)
        if not page.use_app:
            return _response(page)
        names = {k for k, _ in custom.raw_headers}
        for key, value in page.headers:
            raw = key.lower().encode("latin-1")
            if raw == b"set-cookie" or raw not in names:
                custom.raw_headers.append((raw, value.encode("latin-1")))
        return custom


def _response(page: PageAnswer) -> Response:
    response = Response(page.body, page.status)
    response.raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in page.headers
    ]
    return response


@checked
def mfa_router(
    engine: AsyncEngine | AsyncSealedEngine,
    *,
    secret_key: str | bytes,
    current_user: CurrentUser | None = None,
    on_complete: OnComplete | None = None,
    name: str = "mfa_fsm",
    secure_cookies: bool = True,
    aside: web_core.Aside | None = None,
    cookie_prefix: str = "mfa_fsm",
    cookie_max_age: int = 3600,
    title: str = "Sign in",
    throttle: Throttle | Literal["default"] | None = "default",
    max_form_bytes: int = web_core.DEFAULT_MAX_FORM_BYTES,
    max_field_chars: int = web_core.DEFAULT_MAX_FIELD_CHARS,
    csrf_max_age: int = web_core.DEFAULT_CSRF_MAX_AGE,
    unsafe_sealed_without_ledger: bool = False,
    template_dirs: Sequence[str | Path] = (),
    replay_window: float = web_core.DEFAULT_REPLAY_WINDOW,
    replay_limit: int = web_core.DEFAULT_REPLAY_LIMIT,
) -> MfaRouter:
    """A Starlette ``Router`` with the login pages for every provider ``engine`` (an
    AsyncEngine or AsyncSealedEngine) runs; mount it with ``app.mount("/login", router)``.

    ``secret_key`` (str or bytes, at least 32 characters of randomness) signs the pages'
    cookies. ``current_user(request)`` returns the user the application signed in (a
    VerifiedUser, a user id, or ``None``; may be async). ``on_complete(request, view)`` is
    called when a step completes the flow (and for its replay: see
    :mod:`mfa_fsm.web.core`); it may return a Response (a redirect into the application)
    or ``None`` for the success page, and may be async. Every other argument is
    :func:`mfa_fsm.web.flask.mfa_blueprint`'s. Raises UsageError for a blocking engine,
    a missing key, or a limit below its floor; VerifiedUserRequired as mfa_blueprint does.
    """
    if not inspect.iscoroutinefunction(getattr(engine, "view", None)):
        raise UsageError(
            "mfa_router() takes an AsyncEngine or AsyncSealedEngine; a blocking engine goes "
            "with mfa_fsm.web.flask.mfa_blueprint()"
        )
    if not secret_key:
        raise UsageError("mfa_router() needs secret_key=, a long random value from your secrets")
    core = web_core.WebCore(
        engine,
        secret_key=secret_key,
        current_user=current_user is not None,
        secure_cookies=secure_cookies,
        aside=aside,
        cookie_prefix=cookie_prefix,
        cookie_max_age=cookie_max_age,
        title=title,
        throttle=throttle,
        max_form_bytes=max_form_bytes,
        max_field_chars=max_field_chars,
        csrf_max_age=csrf_max_age,
        unsafe_sealed_without_ledger=unsafe_sealed_without_ledger,
        template_dirs=template_dirs,
        replay_window=replay_window,
        replay_limit=replay_limit,
    )
    router = MfaRouter()
    router.core, router._name = core, name
    router._current_user, router._on_complete = current_user, on_complete
    router.routes.extend(
        Route(
            route.path, router._endpoint(route.name), methods=_METHODS, name=f"{name}:{route.name}"
        )
        for route in ROUTES
    )
    router.routes.append(
        Mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name=f"{name}:static")
    )
    router.routes.append(Route("/{rest:path}", router._endpoint("not_found"), methods=_METHODS))
    return router
