"""A Flask blueprint that runs mfa_fsm logins: one route per step, nothing kept in memory.

::

    app = Flask(__name__)
    app.secret_key = ...                                   # signs the cookies below
    engine = Engine(SqlStore("sqlite:///flows.db"), [EntrustConfig(...)])
    mfa = mfa_blueprint(engine, current_user=lambda: session.get("user"), on_complete=...)
    app.register_blueprint(mfa, url_prefix="/login")

    @app.post("/signin")                                    # the application's own password check
    def signin():
        ...                                                 # check the password, then:
        session.clear(); session["user"] = user_id          # a new session (no fixation)
        return mfa.begin("entrust")                         # 303 into the second factor

The application owns the first factor
-------------------------------------
A flow whose first factor the IdP does not check (Entrust ``EXTERNAL``) is a login with the
second factor alone, so it starts only for the user the application vouches for:
``current_user()`` (the application's own verified session) read on the server by
:meth:`MfaBlueprint.begin` or the start page's "Continue as ..." button, never a user id from
a form. Mounting for such a provider without ``current_user`` raises
:class:`~mfa_fsm.core.errors.VerifiedUserRequired`. The start page's typed form takes a user
id *and* password and starts only flows in which the IdP checks that password itself
(Entrust ``PASSWORD_AND_SECONDFACTOR``, CyberArk's first challenge); an unknown user id, a
wrong password, a locked or an EXTERNAL-only account all answer with the same page.

Routes, under the blueprint's prefix::

    GET  /                     start page: "Continue as <user>", and user id + password
    POST /                     start a flow with the typed user id and password; 303 to it
    POST /begin                start a flow for current_user(); 303 to it
    GET  /f/<handle>           the page of the flow's current state (a reload resumes here)
    POST /f/<handle>/first-factor   submit_first_factor   each: one event, then 303 back to
    POST /f/<handle>/factor         select_second_factor  the flow's page (or, for a poll
    POST /f/<handle>/response       submit_response       sent by the page's script, a small
    POST /f/<handle>/poll           poll                  JSON answer)
    POST /f/<handle>/cancel         cancel

Every step carries the end user's address, ``request.remote_addr`` (so the application's
proxy configuration, e.g. werkzeug's ``ProxyFix``, decides what it is), to the IdP's risk
rules; it is not logged. Steps are throttled (:class:`~mfa_fsm.core.throttle.Throttle`, on
by default): a refused step answers 429 with ``Retry-After`` and calls no IdP.

How state travels. Each flow started in a browser gets a random *handle* (in its URLs) and a
cookie of its own, ``__Host-mfa_fsm_flow_<handle>`` (``Path=/``, as the ``__Host-`` prefix
requires, RFC 6265bis 4.1.3.2), so two tabs run two flows side by side; the newest three are
kept. It holds, signed with ``app.secret_key``, the flow id (an :class:`Engine`: the snapshot
stays in its store) or the flow id and the sealed token (a :class:`SealedEngine` with a
replay ledger: the snapshot is the token). The handle is not a secret; the flow id never
appears in a URL or a page. A second cookie, ``__Host-mfa_fsm_csrf``, holds a signed random
value; every form carries a CSRF token derived from it, bound to the flow's handle and valid
for ``csrf_max_age`` seconds (the polling script sends it as ``X-CSRF-Token``); a POST
without a valid one is refused with 400. Cookies are HttpOnly and SameSite=Lax, and Secure
with the ``__Host-`` prefix unless ``secure_cookies`` is false (plain-HTTP loopback only).

Errors become pages, and never change the flow: an event the state does not take, or a
request that lost a race, re-renders the current state; a sealed token another request
superseded (:class:`~mfa_fsm.core.errors.SealedStateStale`: a double click, two tabs) goes
back to the flow's page without touching the flow cookie the winner set; malformed input
shows the same form with the message; an unknown, expired or tampered flow shows "start
again"; an IdP or network failure shows "the identity provider is unavailable" with a button
that tries again; a store failure while handing off the result answers 503 (``Retry-After``)
and the flow's page, or the next poll, hands it off and calls ``on_complete`` later; a body or
field over its size limit is refused (413) without repeating it; a malformed URL handle is a
404. Every response under the blueprint's prefix (werkzeug's own 405 and routing errors, and
static files, included) carries the same security headers, and no-store. No page, log line or
error shows a password, code, token, flow id or cookie.

A request whose ``Accept`` prefers ``application/json`` (the page's polling script) gets JSON
from every route, errors included: ``message`` always; ``state``, ``now``, ``next_poll_at`` and
``deadline`` (epoch seconds) while a push is pending; ``location`` where the browser should go
(on completion: where ``on_complete``'s redirect points, with the cookies it set on the same
answer); ``retry_after`` (seconds) on 409, 429 and 503; ``field`` on 422.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
import structlog
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response as BaseResponse

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import (
    EventNotAllowed,
    FlowConflict,
    FlowNotFound,
    IdpError,
    InvalidInput,
    MfaError,
    ResendTooSoon,
    ResultUnavailable,
    SealedStateError,
    SealedStateStale,
    SealedStateTooLarge,
    SnapshotError,
    StepNotSaved,
    StoreError,
    StoreUnavailable,
    Throttled,
    TransportError,
    UsageError,
    VerifiedUserRequired,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.web import events, wording

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

log = structlog.get_logger("mfa_fsm")

#: The template of each state of the shared vocabulary (under ``templates/mfa_fsm/``; an
#: application overrides one by shipping a template of the same name).
STATE_TEMPLATES = {
    "AwaitingFirstFactor": "mfa_fsm/first_factor.html",
    "AwaitingSecondFactor": "mfa_fsm/choose_factor.html",
    "SecondFactorSelected": "mfa_fsm/code.html",
    "OobPending": "mfa_fsm/approve.html",
    "Completed": "mfa_fsm/completed.html",
    "Failed": "mfa_fsm/failed.html",
}

#: Why a flow failed, for people (``FlowView.failure``).
FAILURES = {
    "rejected": "The sign-in was refused: an answer was not accepted.",
    "denied": "The request was declined on your device.",
    "expired": "The sign-in took too long and has expired.",
    "locked": "Too many wrong answers: this sign-in method is now locked.",
    "cancelled": "You cancelled the sign-in.",
    "idp_error": "The identity provider ended the sign-in.",
    "unavailable": "None of the sign-in methods the identity provider asked for can be used here.",
}

#: What a throttled step is, for people.
THROTTLED = {
    "start": "Too many sign-ins were started",
    "send": "Too many requests were sent to your device",
    "answer": "Too many answers were tried",
}

#: The page's notice when the IdP refuses to send a code or request again.
RESEND_REFUSED = (
    "The identity provider would not send a new code or request. Use the one already "
    "sent, try another way, or cancel and start again"
)

#: The one answer of the typed start form to every refusal (unknown user id, wrong password,
#: locked or EXTERNAL-only account), so that it tells nobody which accounts exist.
NOT_ACCEPTED = "The user id or password was not accepted."

#: Defaults of the request-size limits (``mfa_blueprint(max_form_bytes=, max_field_chars=)``).
DEFAULT_MAX_FORM_BYTES = 16 * 1024
DEFAULT_MAX_FIELD_CHARS = 1024
#: Seconds a page's CSRF token stays valid: above the longest push wait (300 s by default).
DEFAULT_CSRF_MAX_AGE = 1800
#: How many flow cookies a browser keeps (the newest); each tab runs one flow.
MAX_FLOW_COOKIES = 3

#: Steps whose data is built from the current view (the challenge's kind and questions).
_NEEDS_VIEW = frozenset({"first-factor", "factor", "response"})
#: Steps whose form carries a secret: their retry button goes back to the form instead of
#: re-sending (a page never holds a typed secret).
_SECRET_STEPS = frozenset({"first-factor", "response"})
#: Methods the blueprint answers with its own 405 page on a route that does not take them.
_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

#: A flow's URL handle, as ``secrets.token_urlsafe(9)`` makes it: 12 URL-safe base64
#: characters. Anything else is refused (404) before it names a cookie.
_HANDLE = re.compile(r"[A-Za-z0-9_-]{12}")
#: Seconds a browser waits before retrying after the store failed (503).
_STORE_RETRY_AFTER = 5

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

OnComplete = Callable[[FlowView], "ResponseReturnValue | None"]
Aside = Callable[[FlowView | None], "str | None"]
#: Returns the signed-in user the application vouches for: a ``VerifiedUser``, a user id
#: (then ``checked_by`` is "the application"), or ``None`` when nobody is signed in.
CurrentUser = Callable[[], "VerifiedUser | str | None"]


@attrs.frozen
class _Carry:
    """What a flow cookie carries: the flow id, the sealed token for a SealedEngine, who
    checked the first factor and the user id signing in (both shown on the pages)."""

    flow_id: str = attrs.field(repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    who: str | None = None
    user: str | None = None


class _Flows(Protocol):
    providers: tuple[str, ...]

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]: ...

    def send(
        self, carry: _Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]: ...

    def view(self, carry: _Carry) -> FlowView: ...

    def discard(self, carry: _Carry) -> None: ...

    def first_factor_outside(self, provider: str) -> bool: ...

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]: ...


class _StoredFlows:
    """Flows in a server-side store: the cookie carries the flow id only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.providers = engine.providers

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]:
        view = self.engine.start(provider, client_ip=client_ip, **options)
        return view, _Carry(view.flow_id)

    def send(
        self, carry: _Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]:
        return self.engine.send(carry.flow_id, event, client_ip=client_ip, **data), carry

    def view(self, carry: _Carry) -> FlowView:
        return self.engine.view(carry.flow_id)

    def discard(self, carry: _Carry) -> None:
        self.engine.delete(carry.flow_id)

    def first_factor_outside(self, provider: str) -> bool:
        return self.engine.first_factor_outside(provider)

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]:
        return self.engine.hand_off(carry.flow_id), carry


class _SealedFlows:
    """Flows sealed client-side: the cookie carries the flow id and the sealed token."""

    def __init__(self, engine: SealedEngine) -> None:
        self.engine = engine
        self.providers = engine.providers

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]:
        view, token = self.engine.start(provider, client_ip=client_ip, **options)
        return view, _Carry(view.flow_id, token)

    def send(
        self, carry: _Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> tuple[FlowView, _Carry]:
        view, token = self.engine.send(
            _token(carry), carry.flow_id, event, client_ip=client_ip, **data
        )
        return view, attrs.evolve(carry, token=token)

    def view(self, carry: _Carry) -> FlowView:
        return self.engine.view(_token(carry), carry.flow_id)

    def discard(self, carry: _Carry) -> None:
        """Nothing to delete: the token is never handed out, and the ledger record expires."""

    def first_factor_outside(self, provider: str) -> bool:
        return self.engine.first_factor_outside(provider)

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]:
        view, token = self.engine.hand_off(_token(carry), carry.flow_id)
        return view, attrs.evolve(carry, token=token)  # keeps who checked the first factor


def _token(carry: _Carry) -> str:
    if carry.token is None:
        raise SealedStateError("the flow cookie holds no sealed state; start again")
    return carry.token


class _Refused(Exception):
    """A request the blueprint answers with a problem page (CSRF, lost flow, size)."""

    def __init__(self, response: BaseResponse) -> None:
        self.response = response


class MfaBlueprint(Blueprint):
    """The blueprint :func:`mfa_blueprint` returns: a Flask ``Blueprint`` with :meth:`begin`."""

    _web: _Web

    def begin(self, provider: str | None = None, **options: Any) -> BaseResponse:
        """Start a flow for ``current_user()`` and answer with a 303 into it.

        Call it from the application's own view, in the request that finished its own
        first-factor check (after a new session was made for the user). ``provider`` defaults
        to the first provider whose first factor the IdP does not check (Entrust), else the
        first; ``options`` go to the provider's ``start`` (e.g. ``first_factor=``). An
        EXTERNAL first factor is confirmed in the same request, so the user lands on the
        second factor. Raises :class:`VerifiedUserRequired` when ``current_user()`` names
        nobody and :class:`UsageError` for a ``provider`` the engine does not run (both bugs
        of the calling application); IdP, network and throttle failures become the
        blueprint's pages.
        """
        response = self._web.begin(provider, options)
        _security_headers(response)  # answered from the application's view, not ours
        return response


@checked
def mfa_blueprint(
    engine: Engine | SealedEngine,
    *,
    current_user: CurrentUser | None = None,
    name: str = "mfa_fsm",
    secure_cookies: bool = True,
    on_complete: OnComplete | None = None,
    aside: Aside | None = None,
    cookie_prefix: str = "mfa_fsm",
    cookie_max_age: int = 3600,
    title: str = "Sign in",
    throttle: Throttle | Literal["default"] | None = "default",
    max_form_bytes: int = DEFAULT_MAX_FORM_BYTES,
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    csrf_max_age: int = DEFAULT_CSRF_MAX_AGE,
    unsafe_sealed_without_ledger: bool = False,
) -> MfaBlueprint:
    """A blueprint with the login pages for every provider ``engine`` runs; mount it with
    ``app.register_blueprint(bp, url_prefix=...)``. The app must set ``secret_key``.

    ``current_user()`` returns the user the application has signed in with its own first
    factor (a :class:`VerifiedUser`, or a user id), or ``None``; it is required when the
    engine runs a provider whose first factor the IdP may not check (Entrust EXTERNAL),
    else :class:`VerifiedUserRequired` is raised here, at start-up.
    ``on_complete(view)`` is called once, in the request whose step completed the flow;
    ``view.result`` holds the IdP's token for the application's session. Before it is called
    the result is handed off (``Engine.hand_off``): the store keeps no token afterwards, only
    what the final page shows, for one store margin. Without ``on_complete`` the result is
    erased all the same, unseen. It may return a
    response (a redirect into the application); by default the success page is shown.
    ``aside(view)`` may return trusted HTML shown beside every page (``None`` on the start
    page); the demo puts the live diagram there. ``secure_cookies=False`` is for plain-HTTP
    loopback only. ``cookie_max_age`` (seconds) bounds how long a browser keeps a flow's cookie; the
    store (or the sealed token) decides how long the flow itself lives.

    ``throttle``: the engine's own throttle if it has one; else ``"default"`` counts in this
    process with :data:`mfa_fsm.core.throttle.DEFAULT_RATES` (give a ``Throttle`` on Redis
    when several processes serve the pages), ``None`` turns throttling off.
    ``max_form_bytes`` bounds a request body and ``max_field_chars`` each form field (413,
    never echoed); ``csrf_max_age`` is how long (seconds) a page's forms stay valid.

    A :class:`SealedEngine` whose ``SealedState`` has no replay ledger is refused
    (:class:`UsageError`): without one an old flow cookie replays an earlier step, and two
    requests with one cookie both reach the IdP. ``unsafe_sealed_without_ledger=True``
    accepts that knowingly.
    """
    if not all(hasattr(engine, name) for name in ("start", "send", "view", "throttled")):
        raise UsageError(
            "mfa_blueprint() takes an Engine or SealedEngine (mfa_fsm.Engine(store, configs))"
        )
    if throttle == "default":
        if engine.throttle is None:
            from mfa_fsm.core.throttle import Throttle  # noqa: PLC0415 - needs limits

            engine = engine.throttled(Throttle())
    elif throttle is not None or engine.throttle is not None:
        engine = engine.throttled(throttle)
    flows: _Flows
    if isinstance(engine, SealedEngine):
        if engine.sealed.ledger is None and not unsafe_sealed_without_ledger:
            raise UsageError(
                "this SealedEngine's SealedState has no replay ledger: an old flow cookie "
                "would replay an earlier step (even after a cancel) and two requests with "
                "one cookie would both reach the IdP. Give it one, SealedState(keys, "
                "ledger=StoreLedger(RedisStore(...))), or pass "
                "unsafe_sealed_without_ledger=True to accept that"
            )
        flows = _SealedFlows(engine)
    else:
        flows = _StoredFlows(engine)
    outside = [p for p in flows.providers if flows.first_factor_outside(p)]
    if outside and current_user is None:
        raise VerifiedUserRequired(
            f"the engine runs {outside}, whose EXTERNAL first factor is checked by your "
            "application, not the IdP: pass current_user=, a callable returning the user "
            "your application has signed in (e.g. lambda: session.get('user')), and start "
            "their flows with blueprint.begin(); a typed user id never starts them"
        )
    if max_form_bytes < 1024 or max_field_chars < 64 or csrf_max_age < 60:
        raise UsageError(
            "max_form_bytes must be at least 1024, max_field_chars at least 64 and "
            "csrf_max_age at least 60 seconds"
        )
    web = _Web(
        flows,
        name=name,
        current_user=current_user,
        secure=secure_cookies,
        on_complete=on_complete,
        aside=aside,
        prefix=cookie_prefix,
        max_age=cookie_max_age,
        title=title,
        max_form_bytes=max_form_bytes,
        max_field_chars=max_field_chars,
        csrf_max_age=csrf_max_age,
    )
    bp = MfaBlueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/_mfa_fsm_static",
    )
    bp._web = web
    routes: dict[str, dict[str, tuple[str, Callable[..., ResponseReturnValue]]]] = {
        "/": {"GET": ("start_page", web.start_page), "POST": ("start", web.start)},
        "/begin": {"POST": ("begin", web.begin_here)},
        "/f/<handle>": {"GET": ("flow", web.flow_page)},
        "/f/<handle>/<step>": {"POST": ("step", web.step)},
    }
    for number, (rule, methods) in enumerate(routes.items()):
        for method, (endpoint, view_func) in methods.items():
            bp.add_url_rule(rule, endpoint, view_func, methods=[method])
        others = [m for m in _ALL_METHODS if m not in methods]
        bp.add_url_rule(
            rule,
            f"not_allowed_{number}",
            web.method_not_allowed(sorted(methods)),
            methods=others,
        )
    # Anything else under the prefix gets the blueprint's own 404 page, with its headers.
    bp.add_url_rule("/<path:rest>", "not_found", web.not_found, methods=list(_ALL_METHODS))
    bp.before_request(web.check_request)
    bp.after_request(web.finish)
    # Werkzeug's own answers under the prefix (a 405 for TRACE, a routing error, a static
    # file's 404) never reach the blueprint's hooks: an application-wide hook covers them.
    bp.record(lambda state: web.prefixes.append(state.url_prefix or ""))
    bp.after_app_request(web.cover_prefix)
    bp.register_error_handler(HTTPException, web.http_error)
    bp.register_error_handler(SealedStateTooLarge, web.too_large)
    bp.register_error_handler(Exception, web.server_error)
    return bp


class _Web:
    """The view functions; everything they know between requests is in the cookies."""

    def __init__(
        self,
        flows: _Flows,
        *,
        name: str,
        current_user: CurrentUser | None,
        secure: bool,
        on_complete: OnComplete | None,
        aside: Aside | None,
        prefix: str,
        max_age: int,
        title: str,
        max_form_bytes: int,
        max_field_chars: int,
        csrf_max_age: int,
    ) -> None:
        self.flows = flows
        self.name = name
        self.current_user = current_user
        self.secure = secure
        self.on_complete = on_complete
        self.aside = aside
        host = "__Host-" if secure else ""
        self.flow_cookie_prefix = f"{host}{prefix}_flow_"
        self.csrf_cookie = f"{host}{prefix}_csrf"
        self.max_age = max_age
        self.title = title
        self.max_form_bytes = max_form_bytes
        self.max_field_chars = max_field_chars
        self.csrf_max_age = csrf_max_age
        #: The URL prefixes the blueprint is mounted under (one per registration).
        self.prefixes: list[str] = []

    def _url(self, endpoint: str, **values: Any) -> str:
        # Absolute endpoint names: begin() runs inside the application's own views.
        return url_for(f"{self.name}.{endpoint}", **values)

    # -- who is signing in ----------------------------------------------------------------

    def _vouched(self) -> VerifiedUser | None:
        """The application's signed-in user, from its own ``current_user`` callable."""
        if self.current_user is None:
            return None
        user = self.current_user()
        if user is None or isinstance(user, VerifiedUser):
            return user
        if isinstance(user, str) and user:
            return VerifiedUser(user)
        raise UsageError(
            "current_user() must return a VerifiedUser, a user id string or None, "
            f"not a {type(user).__name__}"
        )

    # -- routes ---------------------------------------------------------------------------

    def start_page(self) -> ResponseReturnValue:
        return self._start_page()

    def start(self) -> ResponseReturnValue:
        """The typed form: a user id and the password the IdP checks; one alike refusal."""
        try:
            self._check_csrf("")
            self._check_fields()
        except _Refused as refused:
            return refused.response
        provider = request.form.get("provider", "")
        user = request.form.get("user", "").strip()
        password = request.form.get("password", "")
        if provider not in self.flows.providers:
            return self._start_page(error="Choose one of the identity providers.", status=422)
        if not user or not password:
            return self._start_page(
                error="Type your user id and password.", status=422, provider=provider
            )
        ip = request.remote_addr
        options = {"user": user}
        carry: _Carry | None = None
        try:
            view, carry = self.flows.start(provider, options, ip)
            if view.state == "AwaitingFirstFactor" and events.typed_first_factor(view):
                data = events.first_factor_data(view, [password])
                view, carry = self.flows.send(carry, "submit_first_factor", data, ip)
        except Throttled as exc:
            self._discard(carry)
            return self._throttled(exc)
        except (IdpError, TransportError) as exc:
            if isinstance(exc, TransportError) or exc.transient:
                self._discard(carry)
                return self._unavailable(exc, None, "start", {})
            return self._not_accepted(provider, exc, carry)
        except StoreUnavailable as exc:
            return self._store_unavailable(None, exc, wants_json=False, step="start")
        except SealedStateTooLarge as exc:
            return self.too_large(exc)
        # unknown user, EXTERNAL-only account, malformed id; a flow_id option already taken
        except (UsageError, StoreError) as exc:
            return self._not_accepted(provider, exc, carry)
        if view.state == "Failed" or (
            view.state == "AwaitingFirstFactor"
            and view.challenge is not None
            and view.challenge.rejected
        ):
            return self._not_accepted(provider, None, carry)
        carry = attrs.evolve(carry, user=user)  # "Signing in as <user>" on every page
        if view.state != "AwaitingFirstFactor":
            label = events.provider_label(provider)
            carry = attrs.evolve(carry, who=f"{user}'s password, checked by {label}")
        return self._started(view, carry)

    def begin_here(self) -> ResponseReturnValue:
        """The start page's "Continue as ..." button: begin() after a CSRF check."""
        try:
            self._check_csrf("")
            self._check_fields()
        except _Refused as refused:
            return refused.response
        provider = request.form.get("provider") or None
        if provider is not None and provider not in self.flows.providers:
            return self._start_page(error="Choose one of the identity providers.", status=422)
        if self._vouched() is None:
            return self._problem(
                "Sign in first",
                "Nobody is signed in to the application, so there is no one to continue as.",
                status=403,
                restart=True,
            )
        return self.begin(provider, {})

    def begin(self, provider: str | None, options: Mapping[str, Any]) -> BaseResponse:
        user = self._vouched()
        if user is None:
            raise VerifiedUserRequired(
                "begin() starts a flow for current_user(), and it returned None: call it "
                "after your application has signed the user in"
            )
        if provider is None:
            outside = [p for p in self.flows.providers if self.flows.first_factor_outside(p)]
            provider = (outside or list(self.flows.providers))[0]
        elif provider not in self.flows.providers:
            raise UsageError(
                f"begin() was given provider {provider!r}, which this engine does not run; "
                f"use one of {list(self.flows.providers)} (or none, for the default)"
            )
        ip = request.remote_addr
        carry: _Carry | None = None
        try:
            view, carry = self.flows.start(provider, {"verified_user": user, **options}, ip)
            carry = attrs.evolve(
                carry,
                who=f"{user.user_id}'s password, checked by {user.checked_by}",
                user=user.user_id,
            )
            if view.challenge is not None and view.challenge.kind == "external":
                # The application vouched: confirming EXTERNAL needs nobody's click.
                view, carry = self.flows.send(carry, "submit_first_factor", {}, ip)
        except Throttled as exc:
            return self._throttled(exc)
        except (IdpError, TransportError) as exc:
            if carry is not None:  # started: the flow's page offers "Continue" again
                return self._started(self.flows.view(carry), carry)
            if isinstance(exc, IdpError) and not exc.transient:
                log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
                return self._problem(
                    "This account cannot sign in here",
                    "The identity provider did not accept this account for this application.",
                    status=403,
                    restart=True,
                )
            return self._unavailable(exc, None, "begin", {"provider": provider})
        except StoreUnavailable as exc:
            return self._store_unavailable(None, exc, wants_json=False, step="begin")
        except SealedStateTooLarge as exc:
            return self.too_large(exc)
        except (UsageError, StoreError) as exc:  # StoreError: a flow_id option already taken
            log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
            return self._problem(
                "This account cannot sign in here",
                "The identity provider offers no sign-in method this application can use.",
                status=403,
                restart=True,
            )
        return self._started(view, carry)

    def flow_page(self, handle: str) -> ResponseReturnValue:
        if not _HANDLE.fullmatch(handle):
            return self.not_found(handle)
        wants_json = _wants_json()
        try:
            carry = self._carry(handle, wants_json=wants_json)
            view = self.flows.view(carry)
        except _Refused as refused:
            return refused.response
        except SealedStateStale as exc:
            return self._superseded(handle, exc, wants_json=wants_json, reload=False)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc, wants_json=wants_json)
        except StoreUnavailable as exc:
            return self._store_unavailable(handle, exc, wants_json=wants_json, step="page")
        if _awaits_hand_off(view):
            # The request that completed the flow did not hand it off (the store failed, the
            # connection dropped): this browser holds the flow's cookie, so finish it here.
            return self._finish_completed(handle, view, carry, wants_json=wants_json)
        if wants_json:
            return self._poll_json(handle, view)
        return self._page(handle, view, who=carry.who, user=carry.user)

    def step(self, handle: str, step: str) -> ResponseReturnValue:
        if not _HANDLE.fullmatch(handle):
            return self.not_found(handle)
        built = events.EVENTS.get(step)
        if built is None:
            return self._problem("Page not found", "There is no such step.", status=404)
        event, build = built
        wants_json = _wants_json()
        try:
            self._check_csrf(handle, wants_json=wants_json)
            self._check_fields()
            carry = self._carry(handle, wants_json=wants_json)
        except _Refused as refused:
            return refused.response
        form: events.Form = lambda name: request.form.get(name, "")  # noqa: E731
        current: FlowView | None = None
        try:
            if step in _NEEDS_VIEW:
                current = self.flows.view(carry)
            data = build(current, form) if current is not None else {}
            view, new_carry = self.flows.send(carry, event, data, request.remote_addr)
        except (EventNotAllowed, FlowConflict):
            # Another request moved the flow, or this page was stale: show where it is now.
            return self._current(handle, carry, wants_json)
        except InvalidInput as exc:
            return self._invalid(handle, current, carry, exc, wants_json=wants_json)
        except SealedStateStale as exc:
            # A lost race (double click, two tabs): the winner set the browser's new cookie,
            # which this answer must neither delete nor overwrite.
            return self._superseded(handle, exc, wants_json=wants_json, reload=True)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc, wants_json=wants_json)
        except Throttled as exc:
            return self._throttled(exc, handle=handle, wants_json=wants_json)
        except (IdpError, TransportError) as exc:
            return self._idp_failed(exc, handle, step, carry, form, wants_json=wants_json)
        except StoreUnavailable as exc:
            return self._store_unavailable(handle, exc, wants_json=wants_json, step=step)
        except (UsageError, StoreError) as exc:
            log.info("mfa_fsm.web.step_refused", flow_event=event, error=type(exc).__name__)
            return self._current(handle, carry, wants_json)
        return self._stepped(handle, view, carry, new_carry, wants_json=wants_json)

    def _stepped(
        self, handle: str, view: FlowView, carry: _Carry, new_carry: _Carry, *, wants_json: bool
    ) -> BaseResponse:
        """The answer to a step that went through: hand-off and ``on_complete`` if it
        completed the flow, else the flow's page (303) or the poll's JSON."""
        response: BaseResponse
        if _awaits_hand_off(view):
            response, new_carry = self._complete(handle, view, new_carry, wants_json=wants_json)
        elif wants_json:
            response = self._poll_json(handle, view)
        else:
            response = redirect(self._url("flow", handle=handle), code=303)
        if new_carry != carry:
            self._set_flow_cookie(response, handle, new_carry)
        return response

    def _idp_failed(
        self,
        exc: IdpError | TransportError,
        handle: str,
        step: str,
        carry: _Carry,
        form: events.Form,
        *,
        wants_json: bool,
    ) -> BaseResponse:
        """A step the IdP did not take: a refused resend says so on its page; anything else
        is the IdP being unavailable (503, with a retry form where no secret was typed)."""
        if step == "resend" and isinstance(exc, IdpError) and not exc.transient:
            # The IdP refused to send again; the code or request already sent still works.
            return self._resend_refused(handle, carry, wants_json=wants_json)
        keep = {} if step in _SECRET_STEPS else {k: form(k) for k in ("factor", "delivery")}
        return self._unavailable(exc, handle, step, keep, wants_json=wants_json)

    def _again(self, view: FlowView) -> Mapping[str, str] | None:
        """The failed page's "try again" form (``POST /begin``, the start page's CSRF token)
        when the application has a signed-in user to begin a new flow for; else ``None``."""
        if view.state != "Failed" or view.failure == "unavailable":
            return None
        if self._vouched() is None:
            return None
        return {"url": self._url("begin"), "csrf": self._form_token(""), "provider": view.provider}

    def _resend_refused(self, handle: str, carry: _Carry, *, wants_json: bool) -> BaseResponse:
        """The IdP refused ``resend``: the flow is unchanged; its page (409) says so."""
        log.info("mfa_fsm.web.resend_refused")
        if wants_json:
            response = jsonify(message=RESEND_REFUSED, location=self._url("flow", handle=handle))
            response.status_code = 409
            return response
        return self._page(
            handle,
            self.flows.view(carry),
            notice=RESEND_REFUSED,
            status=409,
            who=carry.who,
            user=carry.user,
        )

    def _invalid(
        self,
        handle: str,
        current: FlowView | None,
        carry: _Carry,
        exc: InvalidInput,
        *,
        wants_json: bool,
    ) -> BaseResponse:
        """Malformed input: the same form with the message (JSON to a script)."""
        if wants_json:
            response = jsonify(
                message=_problem(exc), field=exc.field, location=self._url("flow", handle=handle)
            )
            response.status_code = 422
            return response
        view_now = current or self.flows.view(carry)
        return self._page(handle, view_now, error=exc, status=422, who=carry.who, user=carry.user)

    def method_not_allowed(self, allowed: list[str]) -> Callable[..., ResponseReturnValue]:
        def answer(**_: Any) -> ResponseReturnValue:
            response = self._problem(
                "Method not allowed", "This page does not take that kind of request.", status=405
            )
            response.headers["Allow"] = ", ".join(
                [*allowed, "HEAD"] if "GET" in allowed else allowed
            )
            return response

        return answer

    def not_found(self, rest: str) -> ResponseReturnValue:
        return self._problem("Page not found", "There is no such page.", status=404, restart=True)

    def http_error(self, exc: HTTPException) -> ResponseReturnValue:
        """Flask's own errors under the prefix (413, 400, ...) as the blueprint's pages."""
        status = exc.code or 500
        if status == 413:
            return self._problem(
                "Too much data",
                "The form sent more data than a sign-in needs, so nothing was done with it.",
                status=413,
            )
        return self._problem(exc.name, "The request could not be handled.", status=status)

    def too_large(self, exc: SealedStateTooLarge) -> Response:
        """The flow's state would not fit in the browser's cookie (a SealedEngine, and an IdP
        that sent a lot: a QR image, many long prompts): the step is not completed here, the
        flow cookie is dropped and the page offers a new start, rather than a cookie the
        browser would silently drop. 507 (RFC 4918 section 11.5: the server cannot store
        what the request needs to complete)."""
        log.warning(
            "mfa_fsm.web.sealed_state_too_large",
            size=exc.size,
            limit=exc.limit,
            endpoint=request.endpoint,
        )
        response = self._problem(
            "This sign-in cannot continue in this browser",
            "Your identity provider sent more than this site can keep in your browser, so this "
            "step was not completed. Please start again; if it happens again, choose another "
            "sign-in method or contact the site's support.",
            status=507,
            restart=True,
        )
        handle = (request.view_args or {}).get("handle")
        if isinstance(handle, str) and _HANDLE.fullmatch(handle):
            response.delete_cookie(
                self.flow_cookie_prefix + handle,
                path="/",
                secure=self.secure,
                httponly=True,
                samesite="Lax",
            )
        return response

    def server_error(self, exc: Exception) -> ResponseReturnValue:
        """Any other error: a 500 page (JSON to a script) that shows nothing of the error;
        the log line carries its type and traceback for the operator."""
        if not current_app.secret_key:
            raise exc  # a setup error: loud, with the message saying what to set
        log.error("mfa_fsm.web.server_error", error=type(exc).__name__, exc_info=exc)
        return self._problem(
            "Something went wrong",
            "The sign-in could not continue because of an error on this site. Nothing was "
            "sent. Please try again in a moment.",
            status=500,
            restart=True,
        )

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
        request.max_form_parts = 64

    def finish(self, response: Response) -> Response:
        """Security headers on every response of the blueprint, and the CSRF cookie if new."""
        value = g.get("mfa_fsm_new_csrf")
        if value is not None:
            response.set_cookie(
                self.csrf_cookie,
                self._signer("csrf").dumps(value),
                path="/",
                secure=self.secure,
                httponly=True,
                samesite="Lax",
            )
        return self.cover_prefix(response)

    def cover_prefix(self, response: Response) -> Response:
        """The security and no-store headers on every response under the blueprint's
        prefix, whoever made it (its views, Flask, werkzeug's routing errors)."""
        path = request.path
        for prefix in self.prefixes:
            base = prefix.rstrip("/")
            if path == base or path.startswith(base + "/"):
                _security_headers(response)
                response.headers.setdefault("X-Content-Type-Options", "nosniff")
                break
        return response

    # -- after a step -------------------------------------------------------------------

    def _started(self, view: FlowView, carry: _Carry) -> BaseResponse:
        handle = secrets.token_urlsafe(9)
        if _awaits_hand_off(view):  # completed at once (no second factor needed)
            response, carry = self._complete(handle, view, carry, wants_json=False)
        else:
            response = redirect(self._url("flow", handle=handle), code=303)
        self._set_flow_cookie(response, handle, carry)
        self._drop_old_flow_cookies(response)
        return response

    def _complete(
        self, handle: str, view: FlowView, carry: _Carry, *, wants_json: bool, landing: bool = False
    ) -> tuple[BaseResponse, _Carry]:
        """Hand off a completed flow's result and call ``on_complete``; returns the answer and
        the carry for the flow cookie. ``landing``: the flow's own page asked (a reload after a
        failed hand-off), so without ``on_complete``'s response its page is shown, not a 303."""
        # Hand the result off (once: compare-and-set) before on_complete sees it, so the
        # IdP's token leaves the store (or the client's sealed token) whatever happens.
        try:
            view, carry = self.flows.hand_off(carry)
        except SealedStateStale as exc:
            return self._superseded(handle, exc, wants_json=wants_json, reload=not landing), carry
        except (FlowConflict, ResultUnavailable, FlowNotFound, SealedStateError):
            # Another request handed it off first (or it has gone): show where it is.
            return self._current(handle, carry, wants_json), carry
        except Exception as exc:
            # The store failed (an outage, a timeout): nothing was handed off, the flow is as
            # it was, and the flow's page (or the next poll) hands it off once it is back.
            return self._store_unavailable(handle, exc, wants_json=wants_json), carry
        if self.on_complete is not None:
            custom = self.on_complete(view)
            if custom is not None:
                response = make_response(custom)
                return (self._json_of(handle, response) if wants_json else response), carry
        if wants_json:
            return self._poll_json(handle, view), carry
        if landing:
            return self._page(handle, view, who=carry.who, user=carry.user), carry
        return redirect(self._url("flow", handle=handle), code=303), carry

    def _finish_completed(
        self, handle: str, view: FlowView, carry: _Carry, *, wants_json: bool
    ) -> BaseResponse:
        """The flow's page (or a poll) found it completed but not handed off: do it now."""
        response, new_carry = self._complete(
            handle, view, carry, wants_json=wants_json, landing=True
        )
        if new_carry != carry:
            self._set_flow_cookie(response, handle, new_carry)
        return response

    def _json_of(self, handle: str, response: BaseResponse) -> Response:
        """``on_complete``'s answer for the page's script: where it sends the browser, and
        the cookies it set (the application's session); the script navigates there."""
        if 300 <= response.status_code < 400 and response.location:
            location = response.location
        else:  # a page, not a redirect: the flow's own page shows the success
            location = self._url("flow", handle=handle)
        answer = jsonify(state="Completed", location=location, message="Approved. Signing you in.")
        for cookie in response.headers.getlist("Set-Cookie"):
            answer.headers.add("Set-Cookie", cookie)
        return answer

    def _superseded(
        self, handle: str, exc: SealedStateStale, *, wants_json: bool, reload: bool
    ) -> BaseResponse:
        """A request whose sealed token another request superseded (a double click, two tabs):
        the flow is fine and the browser already holds its newest cookie, so this answer sends
        it back to the flow's page and never touches that cookie."""
        log.info("mfa_fsm.web.superseded", error=type(exc).__name__)
        message = "This sign-in moved on in another request or tab. Trying again."
        if wants_json:
            response = jsonify(now=time.time(), retry_after=1, message=message)
            response.status_code = 409
            return response
        if reload:
            return redirect(self._url("flow", handle=handle), code=303)
        # A page load with an outdated cookie: no redirect loop, a link to reload instead.
        html = self._problem_html(
            "This page is out of date",
            "This sign-in moved on in another request or tab. Reload to continue.",
            back_url=self._url("flow", handle=handle),
            restart=False,
        )
        return make_response(html, 409)

    def _store_unavailable(
        self, handle: str | None, exc: Exception, *, wants_json: bool, step: str = "hand_off"
    ) -> Response:
        """503 with ``Retry-After`` when the flow store failed (``StoreUnavailable``, or any
        error of the hand-off's save): the flow is as it was, so the same request may be
        repeated; nothing is discarded and no cookie changes. After ``StepNotSaved`` (the
        IdP accepted the step, the store never recorded it) the page offers a new start."""
        log.warning("mfa_fsm.web.store_unavailable", step=step, error=type(exc).__name__)
        restart = False
        if isinstance(exc, StepNotSaved):
            # The IdP accepted the step but the store never recorded it: the flow as stored
            # names a transaction the IdP has ended, so a fresh start is the way forward.
            heading = "Sign-in could not be recorded"
            message = (
                "Your identity provider accepted this step, but this site could not record "
                "it. Please start the sign-in again in a few seconds."
            )
            restart = True
        elif step == "hand_off":
            heading = "Almost signed in"
            message = (
                "Your sign-in was accepted, but this site could not record it just now. "
                f"Please try again in {_STORE_RETRY_AFTER} seconds."
            )
        else:
            heading = "Sign-in is briefly unavailable"
            message = (
                "This site could not reach its sign-in records just now. "
                f"Please try again in {_STORE_RETRY_AFTER} seconds."
            )
        back_url = self._url("flow", handle=handle) if handle else self._url("start")
        return self._wait_answer(
            503, _STORE_RETRY_AFTER, heading, message, back_url, restart=restart, json=wants_json
        )

    def _problem_html(
        self, heading: str, message: str, *, back_url: str | None, restart: bool
    ) -> str:
        """The problem page with no retry form: ``heading``, ``message``, and a link back to
        ``back_url`` and/or to the start page (``restart``)."""
        return self._render(
            "mfa_fsm/problem.html",
            aside_for=None,
            heading=heading,
            message=message,
            retry_url=None,
            retry_fields={},
            back_url=back_url,
            restart=restart,
        )

    def _wait_answer(
        self,
        status: int,
        wait: int,
        heading: str,
        message: str,
        back_url: str | None,
        *,
        restart: bool,
        json: bool,
    ) -> Response:
        """A "come back in ``wait`` seconds" answer (429, 503): the problem page, or JSON for
        the page's script, with ``Retry-After``."""
        if json:
            response = jsonify(now=time.time(), retry_after=wait, message=message)
            response.status_code = status
        else:
            html = self._problem_html(
                heading,
                message,
                back_url=back_url,
                restart=restart,
            )
            response = make_response(html, status)
        response.headers["Retry-After"] = str(wait)
        return response

    def _poll_json(self, handle: str, view: FlowView) -> Response:
        now = time.time()
        if view.state != "OobPending":
            message = {
                "Completed": "Approved. Signing you in.",
                "Failed": "The request has ended.",
            }.get(view.state, "Continuing.")
            return jsonify(
                state=view.state, location=self._url("flow", handle=handle), message=message
            )
        return jsonify(
            state=view.state,
            now=now,
            next_poll_at=view.next_poll_at,
            deadline=view.deadline,
            message="Still waiting for your approval.",
            # What the IdP says while it waits (its status message) replaces the page's prompt.
            prompt=view.challenge.prompt if view.challenge is not None else None,
        )

    def _current(self, handle: str, carry: _Carry, wants_json: bool) -> BaseResponse:
        if not wants_json:
            return redirect(self._url("flow", handle=handle), code=303)
        try:
            view = self.flows.view(carry)
        except SealedStateStale as exc:
            return self._superseded(handle, exc, wants_json=True, reload=True)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc, wants_json=True)
        if _awaits_hand_off(view):
            return self._finish_completed(handle, view, carry, wants_json=True)
        return self._poll_json(handle, view)

    def _discard(self, carry: _Carry | None) -> None:
        if carry is None:
            return
        try:
            self.flows.discard(carry)
        except MfaError as exc:
            # The flow expires on its own; the refusal page matters more.
            log.warning("mfa_fsm.web.discard_failed", error=type(exc).__name__)

    def _not_accepted(self, provider: str, exc: Exception | None, carry: _Carry | None) -> Response:
        """The typed form's one refusal: the same page whatever was wrong."""
        self._discard(carry)
        log.info(
            "mfa_fsm.web.start_refused",
            provider=provider,
            error=type(exc).__name__ if exc is not None else "rejected",
        )
        return self._start_page(error=NOT_ACCEPTED, status=401, provider=provider)

    # -- pages ----------------------------------------------------------------------------

    def _page(
        self,
        handle: str,
        view: FlowView,
        *,
        error: InvalidInput | None = None,
        status: int = 200,
        who: str | None = None,
        notice: str | None = None,
        user: str | None = None,
    ) -> Response:
        challenge = view.challenge
        context = {
            "view": view,
            "challenge": challenge,
            "handle": handle,
            "who": who,
            # "Signing in as <user id> - not you?" while the flow runs.
            "signing_in_as": user if not view.is_final else None,
            "action": lambda step: self._url("step", handle=handle, step=step),
            "allowed": events.allowed_events(view),
            "typed_first_factor": events.typed_first_factor(view),
            "can_choose": events.can_choose(view),
            "takes_code": events.takes_code(view),
            "can_resend": events.can_resend(view),
            "notice": notice,
            # A fresh flow for the application's signed-in user, straight to the picker:
            # "send another push" after one expired, "try another way" after any ending,
            # with nothing the application vouched for asked again.
            "again": self._again(view),
            "answers_as_list": events.answers_as_list(challenge),
            "failure_text": FAILURES.get(view.failure or "", "The sign-in ended."),
            "next_steps": events.next_steps(view),
            "error": _problem(error) if error is not None else None,
            "error_field": error.field if error is not None else None,
            "now": time.time(),
            "clock": _clock,
        }
        html = self._render(STATE_TEMPLATES[view.state], aside_for=view, **context)
        return make_response(html, status)

    def _start_page(
        self,
        *,
        error: str | None = None,
        status: int = 200,
        provider: str | None = None,
    ) -> Response:
        if error is not None and _wants_json():
            response = jsonify(message=error)
            response.status_code = status
            return response
        providers = [(p, events.provider_label(p)) for p in self.flows.providers]
        html = self._render(
            "mfa_fsm/start.html",
            aside_for=None,
            providers=providers,
            chosen=provider,
            vouched=self._vouched(),
            outside=[p for p, _ in providers if self.flows.first_factor_outside(p)],
            error=error,
            begin_url=self._url("begin"),
        )
        return make_response(html, status)

    def _start_again(
        self, handle: str, exc: Exception | None, *, wants_json: bool = False
    ) -> Response:
        if isinstance(exc, SealedStateTooLarge):
            return self.too_large(exc)
        if exc is not None:
            log.info("mfa_fsm.web.flow_lost", error=type(exc).__name__)
        wants_json = wants_json or _wants_json()
        message = (
            "This sign-in has ended, has expired, or was started in another browser. "
            "Please start again."
        )
        if wants_json:
            response = jsonify(location=self._url("start_page"), message=message)
            response.status_code = 410
        else:
            response = self._problem("Please start again", message, status=410, restart=True)
        response.delete_cookie(
            self.flow_cookie_prefix + handle,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
        return response

    def _throttled(
        self, exc: Throttled, *, handle: str | None = None, wants_json: bool = False
    ) -> Response:
        log.warning(
            "mfa_fsm.web.throttled", action=exc.action, scope=exc.scope, retry_after=exc.retry_after
        )
        wants_json = wants_json or _wants_json()
        wait = max(1, round(exc.retry_after))
        when = _clock(time.time() + wait)
        message = (
            f"{THROTTLED.get(exc.action, 'Too many attempts')} in a short time. Nothing was "
            f"sent. Please try again in {wait} seconds (at {when})."
        )
        if isinstance(exc, ResendTooSoon):
            message = (
                "A new code or request was sent a moment ago, so nothing was sent now. You "
                f"can ask for another in {wait} seconds (at {when})."
            )
        back_url = self._url("flow", handle=handle) if handle else None
        heading = "Please wait before trying again"
        return self._wait_answer(
            429, wait, heading, message, back_url, restart=handle is None, json=wants_json
        )

    def _unavailable(
        self,
        exc: IdpError | TransportError,
        handle: str | None,
        step: str,
        keep: Mapping[str, str],
        *,
        wants_json: bool = False,
    ) -> Response:
        log.warning(
            "mfa_fsm.web.idp_unavailable",
            step=step,
            error=type(exc).__name__,
            status=getattr(exc, "status", None),
        )
        retry_after = exc.retry_after
        message = "The identity provider is unavailable right now. Please try again."
        wants_json = wants_json or _wants_json()
        if wants_json:
            wait = max(1.0, retry_after or 5.0)
            response = jsonify(
                now=time.time(),
                retry_after=wait,
                message=f"The identity provider is unavailable; trying again in {wait:.0f} s.",
            )
            response.status_code = 503
        else:
            if step == "start":
                # The typed form held a password: back to the form, never a re-send.
                retry_url, back_url = None, self._url("start_page")
            elif step == "begin":
                retry_url, back_url = self._url("begin"), self._url("start_page")
            else:
                assert handle is not None  # noqa: S101 - only a start has no flow yet
                retry_url = self._url("step", handle=handle, step=step)
                back_url = self._url("flow", handle=handle)
            html = self._render(
                "mfa_fsm/problem.html",
                aside_for=None,
                heading="The identity provider is unavailable",
                message=message,
                retry_url=None if step in _SECRET_STEPS else retry_url,
                retry_fields=dict(keep),
                back_url=back_url,
                restart=False,
                handle=handle,  # the retry form's CSRF token is bound to the flow
            )
            response = make_response(html, 503)
        if retry_after:
            response.headers["Retry-After"] = str(max(1, round(retry_after)))
        return response

    def _problem(
        self, heading: str, message: str, *, status: int, restart: bool = False
    ) -> Response:
        if _wants_json():
            answer: dict[str, Any] = {"heading": heading, "message": message}
            if restart:
                answer["location"] = self._url("start_page")
            response = jsonify(answer)
            response.status_code = status
            return response
        html = self._problem_html(
            heading,
            message,
            back_url=None,
            restart=restart,
        )
        return make_response(html, status)

    def _render(self, template: str, *, aside_for: FlowView | None, **context: Any) -> str:
        aside = self.aside(aside_for) if self.aside is not None else None
        handle = context.get("handle") or ""
        return render_template(
            template,
            title=self.title,
            csrf=self._form_token(handle),
            start_url=self._url("start_page"),
            static=lambda name: self._url("static", filename=name),
            provider_label=events.provider_label,
            wording=wording,  # the pages' words per factor kind (mfa_fsm.web.wording)
            aside=Markup(aside) if aside else None,  # noqa: S704 - the app's own trusted HTML
            **context,
        )

    # -- requests -------------------------------------------------------------------------

    def _check_fields(self) -> None:
        """Refuse a form field over ``max_field_chars`` (413), without repeating it."""
        for name, value in request.form.items(multi=True):
            if len(value) > self.max_field_chars or len(name) > 64:
                log.warning("mfa_fsm.web.field_too_long", endpoint=request.endpoint)
                raise _Refused(
                    self._problem(
                        "Too much data",
                        f"A field of the form is longer than {self.max_field_chars} "
                        "characters, so nothing was done with it. Go back and try again.",
                        status=413,
                        restart=True,
                    )
                )

    # -- cookies --------------------------------------------------------------------------

    def _signer(self, purpose: str) -> URLSafeTimedSerializer:
        key = current_app.secret_key
        assert key  # noqa: S101 - check_request refused the request otherwise; for mypy
        return URLSafeTimedSerializer(key, salt=f"mfa_fsm.web.{purpose}")

    def _csrf_secret(self) -> str:
        """The browser's random CSRF value (from its cookie, or new for this response)."""
        value: str | None = g.get("mfa_fsm_csrf")
        if value is None:
            value = self._csrf_from_cookie()
            if value is None:
                value = secrets.token_urlsafe(32)
                g.mfa_fsm_new_csrf = value
            g.mfa_fsm_csrf = value
        return value

    def _form_token(self, handle: str) -> str:
        """A page's CSRF token: bound to this browser's cookie and to the flow's handle
        (``""`` on the start page), and valid for ``csrf_max_age`` seconds (OWASP CSRF
        Prevention Cheat Sheet, "signed double-submit cookie")."""
        return self._signer("csrf-form").dumps([_digest(self._csrf_secret()), handle])

    def _csrf_from_cookie(self) -> str | None:
        raw = request.cookies.get(self.csrf_cookie)
        if not raw:
            return None
        try:
            value = self._signer("csrf").loads(raw)
        except BadData:
            return None
        return value if isinstance(value, str) else None

    def _check_csrf(self, handle: str, *, wants_json: bool = False) -> None:
        secret = self._csrf_from_cookie()
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        bound: Any = None
        if secret and sent:
            try:
                bound = self._signer("csrf-form").loads(sent, max_age=self.csrf_max_age)
            except BadData:
                bound = None
        if (
            secret is not None
            and isinstance(bound, list)
            and len(bound) == 2
            and isinstance(bound[0], str)
            and hmac.compare_digest(bound[0].encode(), _digest(secret).encode())
            and bound[1] == handle
        ):
            return
        log.warning("mfa_fsm.web.csrf_refused", endpoint=request.endpoint)
        message = (
            "This form could not be accepted: it has expired, or it was sent from another "
            "site. Nothing was changed. Go back, reload the page and try again."
        )
        if wants_json:
            response = jsonify(message=message, location=self._url("flow", handle=handle))
            response.status_code = 400
        else:
            response = self._problem("The form has expired", message, status=400, restart=True)
        raise _Refused(response)

    def _carry(self, handle: str, *, wants_json: bool = False) -> _Carry:
        raw = request.cookies.get(self.flow_cookie_prefix + handle)
        data: Any = None
        if raw:
            try:
                data = self._signer("flow").loads(raw, max_age=self.max_age)
            except BadData:
                data = None
        if (
            isinstance(data, dict)
            and data.get("h") == handle
            and isinstance(data.get("f"), str)
            and isinstance(data.get("t"), str | None)
            and isinstance(data.get("w"), str | None)
            and isinstance(data.get("u"), str | None)
        ):
            return _Carry(data["f"], data.get("t"), data.get("w"), data.get("u"))
        if raw is None and self.secure and not request.is_secure:
            # The usual cause: a browser (or client) never sends a Secure cookie back over
            # plain HTTP. Say it to the operator; the page says only "start again".
            log.warning(
                "mfa_fsm.web.flow_cookie_missing_over_http",
                hint="secure cookies are not sent over plain HTTP: serve over HTTPS (with "
                "ProxyFix behind a TLS proxy), or pass secure_cookies=False for plain-HTTP "
                "local development",
            )
        raise _Refused(self._start_again(handle, None, wants_json=wants_json))

    def _set_flow_cookie(self, response: BaseResponse, handle: str, carry: _Carry) -> None:
        payload: dict[str, str] = {"h": handle, "f": carry.flow_id}
        if carry.token is not None:
            payload["t"] = carry.token
        if carry.who is not None:
            payload["w"] = carry.who
        if carry.user is not None:
            payload["u"] = carry.user
        name, value = self.flow_cookie_prefix + handle, self._signer("flow").dumps(payload)
        options: dict[str, Any] = {
            "max_age": self.max_age,
            "path": "/",
            "secure": self.secure,
            "httponly": True,
            "samesite": "Lax",
        }
        # The whole Set-Cookie value, measured as werkzeug measures it (name, value and
        # attributes; Flask's MAX_COOKIE_SIZE, 4,093 by default): a browser silently drops a
        # larger cookie, which would lose the flow, so refuse to set it (see too_large).
        size = len(dump_cookie(name, value, max_size=0, **options))
        limit = response.max_cookie_size if isinstance(response, Response) else 4093
        if limit and size > limit:
            raise SealedStateTooLarge(carry.flow_id, size, limit)
        response.set_cookie(name, value, **options)

    def _drop_old_flow_cookies(self, response: BaseResponse) -> None:
        """Keep the newest flow cookies only: every one travels with every request."""
        aged = []
        for name, raw in request.cookies.items():
            if name.startswith(self.flow_cookie_prefix):
                try:
                    _, signed_at = self._signer("flow").loads(raw, return_timestamp=True)
                except BadData:
                    signed_at = None
                aged.append((signed_at.timestamp() if signed_at else 0.0, name))
        for _, name in sorted(aged, reverse=True)[MAX_FLOW_COOKIES - 1 :]:
            response.delete_cookie(
                name, path="/", secure=self.secure, httponly=True, samesite="Lax"
            )


def _wants_json() -> bool:
    """Whether the request asks for JSON (the page's polling script sends
    ``Accept: application/json``): then every answer, errors included, is JSON."""
    return request.accept_mimetypes.best == "application/json"


def _awaits_hand_off(view: FlowView) -> bool:
    """Whether ``view`` is a completed flow whose result the application has not had yet."""
    return view.state == "Completed" and view.result is not None and not view.result.handed_off


def _security_headers(response: BaseResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _problem(exc: InvalidInput) -> str:
    """The problem part of an InvalidInput message (it never repeats the value)."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _clock(epoch: float | None) -> str:
    """Epoch seconds as the server's local time of day, for "expires at" lines."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) if epoch else ""
