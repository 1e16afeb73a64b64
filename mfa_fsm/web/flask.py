"""The login pages as a Flask blueprint: :func:`mfa_blueprint`, over :mod:`mfa_fsm.web.core`.

::

    app = Flask(__name__)
    app.secret_key = ...                                   # signs the pages' cookies
    engine = Engine(SqlStore("sqlite:///flows.db"), [EntrustConfig(...)])
    mfa = mfa_blueprint(engine, current_user=lambda: session.get("user"), on_complete=...)
    app.register_blueprint(mfa, url_prefix="/login")

    @app.post("/signin")                                    # the application's own password check
    def signin():
        ...                                                 # check the password, then:
        session.clear(); session["user"] = user_id          # a new session (no fixation)
        return mfa.begin("entrust")                         # 303 into the second factor

Everything the pages do (routes, CSRF, the flow cookie, throttles, errors, completion and
its replay) is the core's: see :mod:`mfa_fsm.web.core` and the README's Web section. This
module only turns a Flask request into a :class:`~mfa_fsm.web.core.PageRequest` and the
core's answer into a Flask response. The client address is ``request.remote_addr`` (so the
application's proxy configuration, e.g. werkzeug's ``ProxyFix``, decides what it is).
Templates: the application's own template folders (and ``template_dirs=``) are searched
before the package's, so an app overrides ``mfa_fsm/approve.html`` by shipping it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flask import Blueprint, Response, current_app, make_response, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.plans import run
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.web import core as web_core
from mfa_fsm.web.core import ROUTES, STATIC_DIR, STATIC_PATH, AppAnswer, PageAnswer, PageRequest

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle
    from mfa_fsm.engine import Engine, SealedEngine

OnComplete = Callable[[FlowView], "ResponseReturnValue | None"]
#: Returns the signed-in user the application vouches for: a ``VerifiedUser``, a user id
#: (then ``checked_by`` is "the application"), or ``None`` when nobody is signed in.
CurrentUser = Callable[[], "VerifiedUser | str | None"]
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class MfaBlueprint(Blueprint):
    """The blueprint :func:`mfa_blueprint` returns: a Flask ``Blueprint`` with :meth:`begin`;
    ``core`` is its :class:`~mfa_fsm.web.core.WebCore`."""

    core: web_core.WebCore
    _pages: _Pages

    def begin(self, provider: str | None = None, **options: Any) -> BaseResponse:
        """Start a flow for ``current_user()`` and answer with a 303 into it.

        Call it from the application's own view, in the request that finished its own
        first-factor check (after a new session was made for the user). ``provider`` defaults
        to the first provider whose first factor the IdP does not check (Entrust), else the
        first; ``options`` go to the provider's ``start`` (e.g. ``first_factor=``). An
        EXTERNAL first factor is confirmed in the same request, so the user lands on the
        second factor. Raises :class:`VerifiedUserRequired` when ``current_user()`` names
        nobody and :class:`UsageError` for a ``provider`` the engine does not run (both bugs
        of the calling application); IdP, network and throttle failures become the pages.
        """
        page_request = self._pages.request("begin", {})
        return self._pages.answer(run(self.core.begin(page_request, provider, options)))


@checked
def mfa_blueprint(
    engine: Engine | SealedEngine,
    *,
    current_user: CurrentUser | None = None,
    name: str = "mfa_fsm",
    secure_cookies: bool = True,
    on_complete: OnComplete | None = None,
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
) -> MfaBlueprint:
    """A blueprint with the login pages for every provider ``engine`` (an Engine or
    SealedEngine) runs; mount it with ``app.register_blueprint(bp, url_prefix=...)``. The
    app must set ``secret_key``.

    ``current_user()`` returns the user the application has signed in with its own first
    factor (a :class:`VerifiedUser`, or a user id), or ``None``; it is required when the
    engine runs a provider whose first factor the IdP may not check (Entrust EXTERNAL),
    else :class:`VerifiedUserRequired` is raised here, at start-up.
    ``on_complete(view)`` is called in the request whose step completed the flow (and again
    for a repeat of that request within ``replay_window`` seconds, at most ``replay_limit``
    times: see :mod:`mfa_fsm.web.core`); ``view.result`` holds the IdP's token for the
    application's session. Before it is called the result is handed off
    (``Engine.hand_off``): the store keeps no token afterwards. It may return a response (a
    redirect into the application); by default the success page is shown.
    ``aside(view)`` may return trusted HTML shown beside every page (``None`` on the start
    page). ``secure_cookies=False`` is for plain-HTTP loopback only. ``cookie_max_age``
    (seconds) bounds how long a browser keeps a flow's cookie.

    ``throttle``: the engine's own throttle if it has one; else ``"default"`` counts in this
    process with :data:`mfa_fsm.core.throttle.DEFAULT_RATES`, ``None`` turns throttling off.
    ``max_form_bytes`` bounds a request body and ``max_field_chars`` each form field (413,
    never echoed); ``csrf_max_age`` is how long (seconds) a page's forms stay valid.
    ``template_dirs`` are searched for templates before the application's and the package's.

    A SealedEngine whose ``SealedState`` has no replay ledger is refused (UsageError)
    unless ``unsafe_sealed_without_ledger=True``; so is an async engine (use
    :func:`mfa_fsm.web.starlette.mfa_router`).
    """
    from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine  # noqa: PLC0415

    if not all(hasattr(engine, attr) for attr in ("start", "send", "view", "throttled")):
        raise UsageError(
            "mfa_blueprint() takes an Engine or SealedEngine (mfa_fsm.Engine(store, configs))"
        )
    if isinstance(engine, AsyncEngine | AsyncSealedEngine):
        raise UsageError(
            "mfa_blueprint() takes a blocking Engine or SealedEngine; an async engine goes "
            "with mfa_fsm.web.starlette.mfa_router()"
        )
    core = web_core.WebCore(
        engine,
        secret_key=lambda: current_app.secret_key,
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
    bp = MfaBlueprint(
        name,
        __name__,
        template_folder="templates",  # the demo's pages extend the package's
        static_folder=str(STATIC_DIR),
        static_url_path=STATIC_PATH,
    )
    bp.core, bp._pages = core, _Pages(core, name, current_user, on_complete, max_form_bytes)
    for route in ROUTES:
        methods = list(_ALL_METHODS)
        if route.name == "start_page":  # the typed form's POST keeps its endpoint name
            bp.add_url_rule(
                route.flask_rule, "start", bp._pages.serve(route.name), methods=["POST"]
            )
            methods.remove("POST")
        bp.add_url_rule(route.flask_rule, route.name, bp._pages.serve(route.name), methods=methods)
    bp.add_url_rule("/<path:rest>", "not_found", bp._pages.serve("not_found"), methods=_ALL_METHODS)
    bp.before_request(bp._pages.check_request)
    bp.register_error_handler(HTTPException, bp._pages.http_error)
    bp.register_error_handler(Exception, bp._pages.server_error)
    # Werkzeug's own answers under the prefix (a 405 for TRACE, a routing error, a static
    # file's 404) never reach the blueprint's hooks: an application-wide hook covers them.
    bp.record(bp._pages.registered)
    bp.after_app_request(bp._pages.cover_prefix)
    return bp


class _Pages:
    """Flask requests to the core and its answers back to Flask responses."""

    def __init__(
        self,
        core: web_core.WebCore,
        name: str,
        current_user: CurrentUser | None,
        on_complete: OnComplete | None,
        max_form_bytes: int,
    ) -> None:
        self.core, self.name, self.current_user = core, name, current_user
        self.on_complete, self.max_form_bytes = on_complete, max_form_bytes
        self.prefixes: list[str] = []

    def request(self, route: str, params: dict[str, str], *, form: bool = True) -> PageRequest:
        return PageRequest(
            method=request.method,
            route=route,
            mount=url_for(f"{self.name}.start_page").rstrip("/"),
            params=params,
            form=list(request.form.items(multi=True)) if form else (),
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=request.cookies.to_dict(),
            client_ip=request.remote_addr,
            secure=request.is_secure,
            user=self.current_user,
        )

    def serve(self, route: str) -> Callable[..., BaseResponse]:
        return lambda **params: self.answer(run(self.core.handle(self.request(route, params))))

    def answer(self, page: PageAnswer) -> BaseResponse:
        if page.complete is not None:
            custom = self.on_complete(page.complete) if self.on_complete is not None else None
            if custom is None:
                page = self.core.finish(page, None)
            else:
                response = make_response(custom)
                cookies = response.headers.getlist("Set-Cookie")
                app = AppAnswer(response.status_code, response.location, cookies)
                page = self.core.finish(page, app)
                if page.use_app:
                    for key, value in page.headers:
                        if key.lower() == "set-cookie":
                            response.headers.add(key, value)
                        else:
                            response.headers.setdefault(key, value)
                    return response
        return Response(page.body, page.status, headers=list(page.headers))

    def check_request(self) -> None:
        """Refuse to serve without a key to sign the cookies with, and bound the body size."""
        if not current_app.secret_key:
            raise RuntimeError(
                "mfa_fsm's blueprint signs its cookies with app.secret_key: set it to a long "
                "random value from the application's secrets"
            )
        # Werkzeug stops reading past these (413); the form parser never sees a large body.
        request.max_content_length = self.max_form_bytes
        request.max_form_memory_size = self.max_form_bytes
        request.max_form_parts = web_core.MAX_FORM_PARTS

    def http_error(self, exc: HTTPException) -> BaseResponse:
        """Flask's own errors under the prefix (413, 400, ...) as the pages' answers."""
        params = {k: str(v) for k, v in (request.view_args or {}).items()}
        page_request = self.request("error", params, form=False)
        return self.answer(self.core.refuse(page_request, exc.code or 500, exc.name))

    def server_error(self, exc: Exception) -> BaseResponse:
        if not current_app.secret_key:
            raise exc  # a setup error: loud, with the message saying what to set
        return self.answer(self.core.server_error(self.request("error", {}, form=False), exc))

    def registered(self, state: Any) -> None:
        self.prefixes.append((state.url_prefix or "").rstrip("/"))
        # Flask's template lookup (the application's folders first) before the package's.
        self.core.add_loader(state.app.jinja_env.loader)

    def cover_prefix(self, response: Response) -> Response:
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in self.prefixes):
            for key, value in web_core.SECURITY_HEADERS:
                response.headers.setdefault(key, value)
        return response
