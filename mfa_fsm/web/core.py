"""The login pages, once, for every web framework: routes, CSRF, the flow cookie, throttles,
the page of each state and its context, the poll JSON, recovery, errors, security headers,
completion. Flask (:mod:`mfa_fsm.web.flask`), Starlette/FastAPI (:mod:`mfa_fsm.web.starlette`)
and Django adapters only translate requests and answers; no web framework is imported here.

How an adapter uses it
----------------------
::

    core = WebCore(engine, secret_key=..., current_user=True, template_dirs=[...], ...)
    # mount every ROUTES entry (route.path is Starlette syntax, route.flask_rule werkzeug's)
    # for every method, plus "/{rest:path}" as route "not_found", and serve STATIC_DIR at
    # STATIC_PATH; then, per request:
    page = run(core.handle(page_request))          # Engine / SealedEngine: plans.run
    page = await run_async(core.handle(page_request))  # AsyncEngine...: plans.run_async
    if page.complete is not None:                  # this request completed the flow
        custom = on_complete(..., page.complete)   # the application's response, or None
        page = core.finish(page, None if custom is None else AppAnswer(status, location,
                                                                       set_cookie_values))
        if page.use_app:                           # answer with the app's own response,
            ...                                    # adding page.headers (Set-Cookie appended,
                                                   # the others where it has none)
    return status, headers, body of page

* :class:`PageRequest` is what the core needs of a request: ``method``; ``route`` (a
  :data:`ROUTES` name, or ``"not_found"``) and its path ``params`` (``handle``, ``step``);
  ``mount``, the URL prefix the pages live under (``"/login"``, no trailing slash); ``form``,
  the urlencoded body's (name, value) pairs (the adapter bounds the body at
  ``core.max_form_bytes``, else :meth:`WebCore.refuse` with 413; a form of more than
  :data:`MAX_FORM_PARTS` fields is refused with 413 by the core itself, and an adapter may
  refuse it earlier); ``headers`` (lower-case names), ``cookies``, ``client_ip``,
  ``secure`` (HTTPS);
  ``user``, a zero-argument callable returning the application's signed-in user (a
  VerifiedUser, a user id or ``None``; it may return an awaitable under ``run_async``), or
  ``None`` without ``current_user``; ``framework_csrf``, ``(field name, token)`` when the
  framework checks CSRF itself (Django's ``CsrfViewMiddleware``): the core then skips its
  own signed double-submit check and sets no CSRF cookie, and every template gets the
  framework's field as ``{{ csrf_field }}`` (and its parts as ``csrf_name``, ``csrf``);
  ``browser``, with ``framework_csrf``: the framework's CSRF cookie secret as the request
  sent it (binds a completion replay to the browser, see below).
* :class:`PageAnswer`: ``status``, ``headers`` (pairs; ``Set-Cookie`` may repeat; security
  headers and ``Content-Type`` included), ``body`` (bytes). ``complete``: the completed
  view (full result: the IdP's token) when the request completed a flow; then call
  ``on_complete`` and :meth:`WebCore.finish`, which answers a script request with JSON
  ``{"location": ...}`` carrying the application's cookies, and a page request with the
  application's own response (``use_app``) or, when ``on_complete`` returned nothing, the
  flow's page.
* :meth:`WebCore.begin` (a plan) starts a flow for ``request.user`` from the application's
  own view (``MfaBlueprint.begin``, ``MfaRouter.begin``); :meth:`WebCore.refuse` answers an
  error the framework found first (413, 400); :meth:`WebCore.server_error` a 500;
  :data:`SECURITY_HEADERS` are for answers the core did not make (static files, the
  framework's own errors under the mount).
* Every handler is a *plan* (:mod:`mfa_fsm.core.plans`) whose engine calls are
  :class:`~mfa_fsm.core.plans.Call` objects of the engine's own methods, so :meth:`WebCore.handle`
  runs blocking under ``plans.run`` (Engine, SealedEngine) and awaited under
  ``plans.run_async`` (AsyncEngine, AsyncSealedEngine): one code path. The throttle's counts
  are I/O of the engine's step (:meth:`mfa_fsm.core.throttle.Throttle.counting`), awaited
  under an async engine (a ``limits.aio`` storage).
* The core renders with its own Jinja2 environment: ``template_dirs`` (the application's
  overrides, searched first), then any loaders the adapter adds (:meth:`WebCore.add_loader`;
  Flask: the application's own template lookup), then the package's
  ``templates/mfa_fsm/*.html``. An application overrides a page by shipping a template of
  the same name (``mfa_fsm/approve.html``, or ``mfa_fsm/base.html`` for the frame of every
  page). Every template gets ``title``, ``csrf``, ``csrf_name``, ``csrf_field`` (the
  whole hidden field: write ``{{ csrf_field }}`` in every form, so the field name the
  framework checks is used), ``start_url``, ``static(name)``, ``provider_label(provider)``,
  ``aside`` and the global ``wording`` (:mod:`mfa_fsm.web.wording`, the pages' words per
  factor kind); the state pages add the context of :meth:`WebCore._page` (``view``,
  ``challenge``, ``handle``, ``who``, ``signing_in_as`` (the user id, while the flow runs),
  ``action(step)``, ``allowed``, ``can_choose``, ``takes_code``, ``token_instead``,
  ``can_resend``, ``again``, ``notice``, ``error``, ``error_field``, ``failure_text``,
  ``next_steps``, ``now``, ``clock``, ...), the start page ``providers`` (begin()'s default
  first), ``typed_providers`` (those whose IdP checks a typed password), ``chosen``,
  ``vouched``, ``outside``, ``error``, ``begin_url``, the problem page ``heading``, ``message``,
  ``retry_url``, ``retry_fields``, ``back_url``, ``restart``.

Security notes
--------------
The security model is the Flask blueprint's (see :mod:`mfa_fsm.web.flask`): signed
double-submit CSRF tokens bound to the flow's handle, one ``__Host-`` cookie per flow holding
only the flow id (or the sealed token), HttpOnly and SameSite=Lax, every answer with
``no-store``, a strict CSP and ``frame-ancestors 'none'``, throttles before any IdP call, and
no secret in a page, log line or error.

*Completion replay* (a lost reply must not lose the login). When a step completes a flow
and ``on_complete`` answers with a response of the application's own (a redirect with its
session cookie), the completed view (with the IdP's result) is kept **in this process's
memory** for ``replay_window`` seconds (60 by default), keyed by a SHA-256 digest of the
flow's handle, the exact flow cookie the completing request carried and the completing
*browser's* CSRF cookie secret (the core's own; under a framework that checks CSRF itself,
the framework's cookie as that request sent it, :attr:`PageRequest.browser`). Within the
window, a POST step to that flow from that same browser (the same flow cookie and CSRF
cookie, and a valid CSRF token: a code resubmitted after a lost reply, the script's next
poll) is answered with ``on_complete``'s answer again, ``on_complete`` being called again
with the same view, instead of reaching the engine: the IdP is not called twice and the
user is not stranded on "you are signed in" without the application's session. At most
``replay_limit`` (3) replays; the record is dropped once spent or past the window. Another
browser holding a stolen flow cookie, even with a valid CSRF token of its own, gets no
replay (its request reaches the engine, which finds the flow already handed off: the flow's
page), and a request with no CSRF cookie records or replays nothing. ``on_complete`` must be
safe to call twice for one login. Replays are per process: a repeat that reaches another
worker falls back to the flow's page. ``replay_window=0`` turns it off.

The answer carrying ``on_complete``'s response (and every replay of it) also *expires the
flow's cookie* (``Max-Age=0``), so a browser that received the login no longer holds the
flow: after the application's logout, Back and resubmit finds no flow ("start again")
instead of replaying the login. Only a browser whose reply was lost still holds the cookie,
which is the replay's case. (Where ``on_complete`` returns nothing, or a script is sent to
the flow's own page, the cookie stays: that page shows the success from it.)
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
import jinja2
import structlog
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup

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
from mfa_fsm.core.flow import can_start_again, vouched_first_factor_due
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.plans import Call, Plan
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.web import events, wording

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

log = structlog.get_logger("mfa_fsm")

__all__ = [
    "ROUTES",
    "STATE_TEMPLATES",
    "STATIC_DIR",
    "TEMPLATE_DIR",
    "AppAnswer",
    "PageAnswer",
    "PageRequest",
    "Route",
    "WebCore",
]

#: The package's templates (``mfa_fsm/*.html`` under it) and static files.
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@attrs.frozen
class Route:
    """One route of the pages: ``name`` (what :attr:`PageRequest.route` says), ``path`` under
    the mount in Starlette's syntax (``{handle}``), and the methods it takes (any other
    method answers 405 from the core)."""

    name: str
    path: str
    methods: tuple[str, ...]

    @property
    def flask_rule(self) -> str:
        """``path`` in werkzeug's rule syntax (``<handle>``, ``<path:filename>``)."""
        return re.sub(r"\{(\w+)(?::path)?\}", lambda m: f"<{_conv(m)}{m.group(1)}>", self.path)


def _conv(match: re.Match[str]) -> str:
    return "path:" if match.group(0).endswith(":path}") else ""


#: Every route, under the mount: the adapters mount these and nothing else (anything else
#: under the mount is ``not_found``; the static files are served by the framework).
ROUTES: tuple[Route, ...] = (
    Route("start_page", "/", ("GET", "POST")),  # POST: the typed start form ("start")
    Route("begin", "/begin", ("POST",)),
    Route("flow", "/f/{handle}", ("GET",)),
    Route("step", "/f/{handle}/{step}", ("POST",)),
)
#: Where the adapters serve :data:`STATIC_DIR`, under the mount.
STATIC_PATH = "/_mfa_fsm_static"

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

#: Defaults of the request-size limits (``max_form_bytes=``, ``max_field_chars=``).
DEFAULT_MAX_FORM_BYTES = 16 * 1024
DEFAULT_MAX_FIELD_CHARS = 1024
#: Most form fields a request may carry (adapters refuse more with 413).
MAX_FORM_PARTS = 64
#: Seconds a page's CSRF token stays valid: above the longest push wait (300 s by default).
DEFAULT_CSRF_MAX_AGE = 1800
#: How many flow cookies a browser keeps (the newest); each tab runs one flow.
MAX_FLOW_COOKIES = 3
#: Completion replay (see the module docs): seconds, and most replays of one completion.
DEFAULT_REPLAY_WINDOW = 60.0
DEFAULT_REPLAY_LIMIT = 3
#: The largest Set-Cookie a browser keeps, name and attributes included (Flask's
#: MAX_COOKIE_SIZE default; RFC 6265 section 6.1 asks browsers for at least 4,096 bytes).
MAX_COOKIE_BYTES = 4093

#: Steps whose data is built from the current view (the challenge's kind and questions).
_NEEDS_VIEW = frozenset({"first-factor", "factor", "response"})
#: Steps that ask the IdP to reach the user's device: a refusal is a notice on their page.
_SENDING_STEPS = frozenset({"factor", "resend"})
#: Steps whose form carries a secret: their retry button goes back to the form instead of
#: re-sending (a page never holds a typed secret).
_SECRET_STEPS = frozenset({"first-factor", "response"})

#: A flow's URL handle, as ``secrets.token_urlsafe(9)`` makes it: 12 URL-safe base64
#: characters. Anything else is refused (404) before it names a cookie.
HANDLE = re.compile(r"[A-Za-z0-9_-]{12}")
#: Seconds a browser waits before retrying after the store failed (503).
_STORE_RETRY_AFTER = 5

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The headers of every answer under the mount (added where absent).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", CSP),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
)

_HTML = "text/html; charset=utf-8"
_JSON = "application/json"

#: ``aside(view)`` returns trusted HTML shown beside every page (``None`` on the start page).
Aside = Callable[[FlowView | None], "str | None"]


# -- the neutral request and answer --------------------------------------------------------


@attrs.frozen
class PageRequest:
    """A request to the pages, as the core needs it (see the module docs).

    ``route``: a :data:`ROUTES` name, or ``"not_found"``; ``params``: its path parameters
    (``handle``, ``step``); ``form``: the urlencoded body's (name, value) pairs, in order;
    ``headers``: lower-case names; ``mount``: the URL prefix of the pages (no trailing
    ``/``); ``secure``: the request came over HTTPS (only for an operator hint);
    ``user``: returns the application's signed-in user (a VerifiedUser, a user id or
    ``None``; awaitable under ``run_async``), or ``None`` when the application gave no
    ``current_user``; ``framework_csrf``: ``(field name, token)`` when the framework checks
    CSRF itself; ``browser``: what binds a completion replay to this browser, for an
    adapter that sets ``framework_csrf``: the framework's CSRF cookie secret *as this
    request sent it* (Django: ``request.META["CSRF_COOKIE"]`` read before the view runs,
    so a token rotated at login does not change it), ``None`` when it sent none. Without
    ``framework_csrf`` the core binds to its own CSRF cookie's secret and ignores it.
    """

    method: str
    route: str
    mount: str
    params: Mapping[str, str] = attrs.field(factory=dict)
    form: Sequence[tuple[str, str]] = attrs.field(default=(), repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    client_ip: str | None = attrs.field(default=None, repr=False)
    secure: bool = True
    user: Callable[[], Any] | None = attrs.field(default=None, repr=False)
    framework_csrf: tuple[str, str] | None = attrs.field(default=None, repr=False)
    browser: str | None = attrs.field(default=None, repr=False)

    def wants_json(self) -> bool:
        """Whether the request asks for JSON (the page's polling script sends
        ``Accept: application/json``): then every answer, errors included, is JSON. The
        best type of ``Accept`` as werkzeug ranks it: most specific first, then quality."""
        best: tuple[tuple[bool, bool], float, str] | None = None
        for part in self.headers.get("accept", "").split(","):
            media, _, params = part.strip().partition(";")
            media = media.strip().lower()
            if not media:
                continue
            quality = 1.0
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key.strip() == "q":
                    try:
                        quality = float(value)
                    except ValueError:
                        quality = 0.0
            if quality <= 0:
                continue
            kind, _, sub = media.partition("/")
            rank = ((kind != "*", sub not in ("*", "")), quality, media)
            if best is None or rank[:2] > best[:2]:
                best = rank
        return best is not None and best[2] == _JSON


@attrs.frozen
class AppAnswer:
    """What ``on_complete``'s response says, as the core needs it: its status, where it
    redirects (``Location``, or ``None``) and the ``Set-Cookie`` headers it carries."""

    status: int
    location: str | None = None
    set_cookies: Sequence[str] = attrs.field(default=(), repr=False)


@attrs.frozen
class PageAnswer:
    """An answer: ``status``, ``headers`` (pairs; ``Set-Cookie`` may repeat) and ``body``.

    ``complete``: the completed flow's view (with the IdP's result), when this request
    completed it: call ``on_complete`` and :meth:`WebCore.finish`. ``use_app``: answer with
    the application's own response (``on_complete``'s), adding ``headers`` to it
    (``Set-Cookie`` appended, the others only where the response has none).
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = attrs.field(default=b"", repr=False)
    complete: FlowView | None = None
    use_app: bool = False
    pending: _Pending | None = attrs.field(default=None, repr=False, eq=False)

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (any case), or ``None``."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@attrs.frozen
class _Pending:
    """What :meth:`WebCore.finish` needs of the request that completed a flow."""

    request: PageRequest = attrs.field(repr=False)
    handle: str
    view: FlowView = attrs.field(repr=False)
    landing: bool
    cookies: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)
    #: The flow cookie the completing request carried (the replay's key), and whether this
    #: answer is itself a replay (then nothing is recorded again).
    raw: str = attrs.field(default="", repr=False)
    replay: bool = False


@attrs.frozen
class Carry:
    """What a flow cookie carries: the flow id, the sealed token for a sealed engine, who
    checked the first factor and the user id signing in (both shown on the pages)."""

    flow_id: str = attrs.field(repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    who: str | None = None
    user: str | None = None


# -- I/O the plans yield -------------------------------------------------------------------


@attrs.frozen
class _Ask:
    """The application's ``current_user``: called, and awaited if it returns an awaitable
    (under ``run_async``; a blocking caller refuses one with UsageError)."""

    function: Callable[[], Any]

    def blocking(self) -> Any:
        result = self.function()
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise UsageError(
                "current_user() is asynchronous, and this integration blocks (Flask): give "
                "it a plain function"
            )
        return result

    async def awaited(self) -> Any:
        result = self.function()
        if inspect.isawaitable(result):
            return await result
        return result


class _Flows(Protocol):
    """The engine, as plans: the same for blocking and async engines."""

    providers: tuple[str, ...]

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]: ...

    def send(
        self, carry: Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]: ...

    def again(
        self, carry: Carry, verified_user: VerifiedUser, client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]: ...

    def view(self, carry: Carry) -> Plan[FlowView]: ...

    def discard(self, carry: Carry) -> Plan[None]: ...

    def hand_off(self, carry: Carry) -> Plan[tuple[FlowView, Carry]]: ...

    def first_factor_outside(self, provider: str) -> bool: ...

    def idp_checks_password(self, provider: str) -> bool: ...


class _StoredFlows:
    """Flows in a server-side store (Engine, AsyncEngine): the cookie carries the flow id.
    Each engine call is one :class:`~mfa_fsm.core.plans.Call`: called by ``plans.run``,
    awaited by ``plans.run_async``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.providers: tuple[str, ...] = engine.providers

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        view = yield Call(self.engine.start, (provider,), {**options, "client_ip": client_ip})
        return view, Carry(view.flow_id)

    def send(
        self, carry: Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        args = (carry.flow_id, event)
        view = yield Call(self.engine.send, args, {**data, "client_ip": client_ip})
        return view, carry

    def again(
        self, carry: Carry, verified_user: VerifiedUser, client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        options = {"verified_user": verified_user, "client_ip": client_ip}
        view = yield Call(self.engine.again, (carry.flow_id,), options)
        return view, Carry(view.flow_id)

    def view(self, carry: Carry) -> Plan[FlowView]:
        view: FlowView = yield Call(self.engine.view, (carry.flow_id,))
        return view

    def discard(self, carry: Carry) -> Plan[None]:
        yield Call(self.engine.delete, (carry.flow_id,))

    def hand_off(self, carry: Carry) -> Plan[tuple[FlowView, Carry]]:
        view = yield Call(self.engine.hand_off, (carry.flow_id,))
        return view, carry

    def first_factor_outside(self, provider: str) -> bool:
        return bool(self.engine.first_factor_outside(provider))

    def idp_checks_password(self, provider: str) -> bool:
        # An engine of the application's own (a wrapper) may not say: then the IdP checks.
        checks = getattr(self.engine, "idp_checks_password", None)
        return True if checks is None else bool(checks(provider))


class _SealedFlows:
    """Flows sealed client-side (SealedEngine, AsyncSealedEngine): the cookie carries the
    flow id and the sealed token."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.providers: tuple[str, ...] = engine.providers

    def start(
        self, provider: str, options: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        started = yield Call(self.engine.start, (provider,), {**options, "client_ip": client_ip})
        view, token = started
        return view, Carry(view.flow_id, token)

    def send(
        self, carry: Carry, event: str, data: Mapping[str, Any], client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        args = (_token(carry), carry.flow_id, event)
        view, token = yield Call(self.engine.send, args, {**data, "client_ip": client_ip})
        return view, attrs.evolve(carry, token=token)

    def again(
        self, carry: Carry, verified_user: VerifiedUser, client_ip: str | None
    ) -> Plan[tuple[FlowView, Carry]]:
        options = {"verified_user": verified_user, "client_ip": client_ip}
        args = (_token(carry), carry.flow_id)
        view, token = yield Call(self.engine.again, args, options)
        return view, Carry(view.flow_id, token)

    def view(self, carry: Carry) -> Plan[FlowView]:
        view: FlowView = yield Call(self.engine.view, (_token(carry), carry.flow_id))
        return view

    def discard(self, carry: Carry) -> Plan[None]:
        """Nothing to delete: the token is never handed out, and the ledger record expires."""
        return
        yield  # a plan

    def hand_off(self, carry: Carry) -> Plan[tuple[FlowView, Carry]]:
        view, token = yield Call(self.engine.hand_off, (_token(carry), carry.flow_id))
        return view, attrs.evolve(carry, token=token)  # keeps who checked the first factor

    def first_factor_outside(self, provider: str) -> bool:
        return bool(self.engine.first_factor_outside(provider))

    def idp_checks_password(self, provider: str) -> bool:
        # An engine of the application's own (a wrapper) may not say: then the IdP checks.
        checks = getattr(self.engine, "idp_checks_password", None)
        return True if checks is None else bool(checks(provider))


def _token(carry: Carry) -> str:
    if carry.token is None:
        raise SealedStateError("the flow cookie holds no sealed state; start again")
    return carry.token


def flows_of(engine: Any, *, unsafe_sealed_without_ledger: bool) -> _Flows:
    """The engine as the core drives it; UsageError for anything but one of the four
    engines, or a sealed one without a replay ledger (see ``unsafe_sealed_without_ledger``)."""
    if hasattr(engine, "sealed"):
        if engine.sealed.ledger is None and not unsafe_sealed_without_ledger:
            raise UsageError(
                "this SealedEngine's SealedState has no replay ledger: an old flow cookie "
                "would replay an earlier step (even after a cancel) and two requests with "
                "one cookie would both reach the IdP. Give it one, SealedState(keys, "
                "ledger=StoreLedger(RedisStore(...))), or pass "
                "unsafe_sealed_without_ledger=True to accept that"
            )
        return _SealedFlows(engine)
    return _StoredFlows(engine)


# -- answers under construction ------------------------------------------------------------


class _Refused(Exception):
    """A request the core answers with a problem page (CSRF, lost flow, size)."""

    def __init__(self, answer: _Out) -> None:
        self.answer = answer


@attrs.define
class _Out:
    """A mutable answer while a handler builds it."""

    status: int
    body: bytes = b""
    content_type: str = _HTML
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    complete: FlowView | None = None
    pending: _Pending | None = None

    def set(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))


def _with_cookies(out: _Out, cookies: Sequence[tuple[str, str]]) -> _Out:
    """``out`` with ``cookies`` (Set-Cookie pairs) added, also to a completion's answer."""
    if out.pending is not None:
        out.pending = attrs.evolve(out.pending, cookies=(*out.pending.cookies, *cookies))
    else:
        out.headers += cookies
    return out


def _json(status: int = 200, **answer: Any) -> _Out:
    return _Out(status, json.dumps(answer).encode(), _JSON)


def _redirect(location: str) -> _Out:
    out = _Out(303, b"", _HTML)
    out.set("Location", location)
    return out


def cookie_header(
    name: str,
    value: str,
    *,
    max_age: int | None,
    secure: bool,
    path: str = "/",
) -> str:
    """A ``Set-Cookie`` value as werkzeug's ``dump_cookie`` writes it (RFC 6265 section 4.1):
    HttpOnly, SameSite=Lax, ``Secure`` when ``secure``; ``max_age=0`` deletes it."""
    parts = [f"{name}={value}"]
    if max_age is not None:
        expires = formatdate(time.time() + max_age if max_age else 0, usegmt=True)
        parts += [f"Expires={expires}", f"Max-Age={max_age}"]
    if secure:
        parts.append("Secure")
    parts += ["HttpOnly", f"Path={path}", "SameSite=Lax"]
    return "; ".join(parts)


# -- the core ------------------------------------------------------------------------------


class _Ctx:
    """One request's state: the request, its form, the CSRF value it uses."""

    def __init__(self, request: PageRequest) -> None:
        self.request = request
        self.form: dict[str, str] = {}
        for name, value in request.form:
            self.form.setdefault(name, value)
        self.wants_json = request.wants_json()
        self.csrf_secret: str | None = None
        self.new_csrf: str | None = None
        self.user_known = False
        self.user: VerifiedUser | None = None


class WebCore:
    """The pages' logic for one engine, framework-neutral (see the module docs).

    ``secret_key`` signs the cookies: a key, or a callable returning it (Flask's
    ``app.secret_key``, read per request). ``current_user``: whether the application gives
    one (the adapter then sets :attr:`PageRequest.user`); required when the engine runs a
    provider whose first factor the IdP may not check (VerifiedUserRequired otherwise).
    ``template_dirs`` are searched first for templates, then ``loaders``, then the package.
    The other arguments are :func:`mfa_fsm.web.flask.mfa_blueprint`'s. Raises UsageError for
    a wrong engine or a limit below its floor.
    """

    def __init__(
        self,
        engine: Any,
        *,
        secret_key: str | bytes | Callable[[], str | bytes | None],
        current_user: bool = False,
        secure_cookies: bool = True,
        aside: Aside | None = None,
        cookie_prefix: str = "mfa_fsm",
        cookie_max_age: int = 3600,
        title: str = "Sign in",
        throttle: Throttle | Literal["default"] | None = "default",
        max_form_bytes: int = DEFAULT_MAX_FORM_BYTES,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
        csrf_max_age: int = DEFAULT_CSRF_MAX_AGE,
        unsafe_sealed_without_ledger: bool = False,
        template_dirs: Sequence[str | Path] = (),
        loaders: Sequence[jinja2.BaseLoader] = (),
        replay_window: float = DEFAULT_REPLAY_WINDOW,
        replay_limit: int = DEFAULT_REPLAY_LIMIT,
    ) -> None:
        if not all(hasattr(engine, name) for name in ("start", "send", "view", "throttled")):
            raise UsageError(
                "the login pages take an Engine or SealedEngine (mfa_fsm.Engine(store, configs))"
            )
        if throttle == "default":
            if engine.throttle is None:
                from mfa_fsm.core.throttle import Throttle  # noqa: PLC0415 - needs limits

                engine = engine.throttled(Throttle())
        elif throttle is not None or engine.throttle is not None:
            engine = engine.throttled(throttle)
        self.engine = engine
        self.flows = flows_of(engine, unsafe_sealed_without_ledger=unsafe_sealed_without_ledger)
        outside = [p for p in self.flows.providers if self.flows.first_factor_outside(p)]
        if outside and not current_user:
            raise VerifiedUserRequired(
                f"the engine runs {outside}, whose EXTERNAL first factor is checked by your "
                "application, not the IdP: pass current_user=, a callable returning the user "
                "your application has signed in (e.g. lambda: session.get('user')), and start "
                "their flows with begin(); a typed user id never starts them"
            )
        if max_form_bytes < 1024 or max_field_chars < 64 or csrf_max_age < 60:
            raise UsageError(
                "max_form_bytes must be at least 1024, max_field_chars at least 64 and "
                "csrf_max_age at least 60 seconds"
            )
        if replay_window < 0 or replay_limit < 0:
            raise UsageError("replay_window (seconds) and replay_limit must be zero or more")
        self.secret_key = secret_key
        self.secure = secure_cookies
        self.aside = aside
        host = "__Host-" if secure_cookies else ""
        self.flow_cookie_prefix = f"{host}{cookie_prefix}_flow_"
        self.csrf_cookie = f"{host}{cookie_prefix}_csrf"
        self.max_age = cookie_max_age
        self.title = title
        self.max_form_bytes = max_form_bytes
        self.max_field_chars = max_field_chars
        self.csrf_max_age = csrf_max_age
        self.replay_window = replay_window
        self.replay_limit = replay_limit
        self._replays: dict[str, tuple[float, int, FlowView]] = {}
        self._replay_lock = threading.Lock()
        self.loaders: list[jinja2.BaseLoader] = [
            jinja2.FileSystemLoader([str(d) for d in template_dirs]),
            *loaders,
        ]
        self.jinja = jinja2.Environment(
            loader=jinja2.ChoiceLoader([*self.loaders, jinja2.FileSystemLoader(str(TEMPLATE_DIR))]),
            autoescape=jinja2.select_autoescape(["html", "htm", "xml"]),
        )
        # The pages' words per factor kind, for every template (the application's too).
        self.jinja.globals["wording"] = wording

    def add_loader(self, loader: jinja2.BaseLoader) -> None:
        """Search ``loader`` for templates after ``template_dirs``, before the package."""
        self.loaders.append(loader)
        self.jinja.loader = jinja2.ChoiceLoader(
            [*self.loaders, jinja2.FileSystemLoader(str(TEMPLATE_DIR))]
        )

    # -- entry points -----------------------------------------------------------------------

    def handle(self, request: PageRequest) -> Plan[PageAnswer]:
        """The answer to ``request``, as a plan (run it with ``plans.run`` or
        ``plans.run_async``, matching the engine). Never raises for a request: every error
        is an answer (500 for a bug, logged with its traceback)."""
        ctx = _Ctx(request)
        try:
            out = yield from self._dispatch(ctx)
        except _Refused as refused:
            out = refused.answer
        except SealedStateTooLarge as exc:
            out = self._too_large(ctx, exc)
        except Exception as exc:  # every error of a request is a page
            out = self._server_error(ctx, exc)
        return self._done(ctx, out)

    def begin(
        self, request: PageRequest, provider: str | None = None, options: Mapping[str, Any] = {}
    ) -> Plan[PageAnswer]:
        """Start a flow for the application's signed-in user (``request.user``) and answer
        with a 303 into it (see ``MfaBlueprint.begin``). Raises VerifiedUserRequired when
        nobody is signed in and UsageError for an unknown ``provider`` (bugs of the calling
        application); IdP, network and throttle failures become pages."""
        ctx = _Ctx(request)
        try:
            out = yield from self._begin(ctx, provider, options)
        except SealedStateTooLarge as exc:
            out = self._too_large(ctx, exc)
        return self._done(ctx, out)

    def finish(self, answer: PageAnswer, app: AppAnswer | None) -> PageAnswer:
        """The answer to a request that completed a flow, once ``on_complete`` answered
        ``app`` (``None``: it returned nothing). Page requests get the application's own
        response (``use_app``: add ``headers`` to it) or the flow's page; script requests
        JSON: ``location`` (where the application's redirect points) and its cookies."""
        pending = answer.pending
        if pending is None:
            raise UsageError("finish() takes the PageAnswer whose complete is set")
        ctx = _Ctx(pending.request)
        handle, view = pending.handle, pending.view
        if app is not None and not pending.replay:
            # Kept for a repeat of this request whose answer gets lost (module docs); only
            # an answer of the application's own is worth repeating.
            self._remember(handle, pending.raw, self._browser(ctx), view)
        out: _Out
        if app is not None and ctx.wants_json:
            cookies: Sequence[tuple[str, str]] = pending.cookies
            if 300 <= app.status < 400 and app.location:
                location = app.location
                cookies = self._expire_flow(handle, cookies)
            else:  # a page, not a redirect: the flow's own page shows the success
                location = self._url(ctx, "flow", handle=handle)
            out = _json(state="Completed", location=location, message="Approved. Signing you in.")
            out.headers += [("Set-Cookie", cookie) for cookie in app.set_cookies]
            out.headers.extend(cookies)
            return self._done(ctx, out)
        if app is not None:
            out = _Out(app.status)
            out.headers.extend(self._expire_flow(handle, pending.cookies))
            return PageAnswer(app.status, (*out.headers, *SECURITY_HEADERS), use_app=True)
        if ctx.wants_json:
            out = self._poll_json(ctx, handle, view)
        elif pending.landing:
            out = _without_io(self._page(ctx, handle, view))
        else:
            out = _redirect(self._url(ctx, "flow", handle=handle))
        out.headers.extend(pending.cookies)
        return self._done(ctx, out)

    def refuse(self, request: PageRequest, status: int, name: str = "") -> PageAnswer:
        """The page for an error the framework found before the core (413 for a body over
        ``max_form_bytes``, a malformed request's 400, ...)."""
        ctx = _Ctx(request)
        if status == 413:
            out = self._problem(
                ctx,
                "Too much data",
                "The form sent more data than a sign-in needs, so nothing was done with it.",
                status=413,
            )
        elif status == 404:
            out = self._problem(
                ctx, "Page not found", "There is no such page.", status=404, restart=True
            )
        else:
            out = self._problem(
                ctx, name or "Bad request", "The request could not be handled.", status=status
            )
        return self._done(ctx, out)

    def server_error(self, request: PageRequest, exc: BaseException) -> PageAnswer:
        """The 500 answer for an error outside the core (logged with its traceback)."""
        ctx = _Ctx(request)
        return self._done(ctx, self._server_error(ctx, exc))

    def flow_cookie(self, handle: str, carry: Carry) -> str:
        """The ``Set-Cookie`` value of a flow's cookie; raises SealedStateTooLarge when it
        would pass :data:`MAX_COOKIE_BYTES` (a browser silently drops a larger cookie, which
        would lose the flow)."""
        payload: dict[str, str] = {"h": handle, "f": carry.flow_id}
        if carry.token is not None:
            payload["t"] = carry.token
        if carry.who is not None:
            payload["w"] = carry.who
        if carry.user is not None:
            payload["u"] = carry.user
        name, value = self.flow_cookie_prefix + handle, self._signer("flow").dumps(payload)
        header = cookie_header(name, value, max_age=self.max_age, secure=self.secure)
        if len(header) > MAX_COOKIE_BYTES:
            raise SealedStateTooLarge(carry.flow_id, len(header), MAX_COOKIE_BYTES)
        return header

    def url(self, mount: str, route: str, **values: str) -> str:
        """The URL of ``route`` (``start_page``, ``begin``, ``flow``, ``step``, ``static``)
        under ``mount``."""
        base = mount.rstrip("/")
        if route in ("start_page", "start"):
            return base + "/"
        if route == "begin":
            return base + "/begin"
        if route == "flow":
            return f"{base}/f/{values['handle']}"
        if route == "step":
            return f"{base}/f/{values['handle']}/{values['step']}"
        if route == "static":
            return f"{base}{STATIC_PATH}/{values['filename']}"
        raise UsageError(f"no route {route!r}")

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, ctx: _Ctx) -> Plan[_Out]:
        request = ctx.request
        route = next((r for r in ROUTES if r.name == request.route), None)
        if route is None:
            return self._problem(
                ctx, "Page not found", "There is no such page.", status=404, restart=True
            )
        method = "GET" if request.method == "HEAD" else request.method
        if method not in route.methods:
            out = self._problem(
                ctx,
                "Method not allowed",
                "This page does not take that kind of request.",
                status=405,
            )
            allowed = list(route.methods)
            out.set("Allow", ", ".join([*allowed, "HEAD"] if "GET" in allowed else allowed))
            return out
        if route.name == "start_page":
            if method == "GET":
                return (yield from self._start_page(ctx))
            return (yield from self._start(ctx))
        if route.name == "begin":
            return (yield from self._begin_here(ctx))
        handle = request.params.get("handle", "")
        if not HANDLE.fullmatch(handle):
            return self._problem(
                ctx, "Page not found", "There is no such page.", status=404, restart=True
            )
        if route.name == "flow":
            return (yield from self._flow_page(ctx, handle))
        return (yield from self._step(ctx, handle, request.params.get("step", "")))

    def _done(self, ctx: _Ctx, out: _Out) -> PageAnswer:
        """The answer: security headers, the CSRF cookie if new, the content type."""
        headers = list(out.headers)
        if ctx.new_csrf is not None:
            headers.append(
                (
                    "Set-Cookie",
                    cookie_header(
                        self.csrf_cookie,
                        self._signer("csrf").dumps(ctx.new_csrf),
                        max_age=None,
                        secure=self.secure,
                    ),
                )
            )
        names = {k.lower() for k, _ in headers}
        if out.complete is None and "content-type" not in names:
            headers.append(("Content-Type", out.content_type))
        headers += [(k, v) for k, v in SECURITY_HEADERS if k.lower() not in names]
        return PageAnswer(out.status, tuple(headers), out.body, out.complete, False, out.pending)

    # -- who is signing in ------------------------------------------------------------------

    def _vouched(self, ctx: _Ctx) -> Plan[VerifiedUser | None]:
        """The application's signed-in user, from its own ``current_user``."""
        if ctx.user_known:
            return ctx.user
        ask = ctx.request.user
        user = None if ask is None else (yield _Ask(ask))
        if user is not None and not isinstance(user, VerifiedUser):
            if isinstance(user, str) and user:
                user = VerifiedUser(user)
            else:
                raise UsageError(
                    "current_user() must return a VerifiedUser, a user id string or None, "
                    f"not a {type(user).__name__}"
                )
        ctx.user, ctx.user_known = user, True
        return user

    # -- routes -----------------------------------------------------------------------------

    def _start(self, ctx: _Ctx) -> Plan[_Out]:
        """The typed form: a user id and the password the IdP checks; one alike refusal."""
        self._check_csrf(ctx, "")
        self._check_fields(ctx)
        provider = ctx.form.get("provider", "")
        user = ctx.form.get("user", "").strip()
        password = ctx.form.get("password", "")
        if provider not in self.flows.providers or not self.flows.idp_checks_password(provider):
            return (
                yield from self._start_page(
                    ctx, error="Choose one of the identity providers.", status=422
                )
            )
        if not user or not password:
            return (
                yield from self._start_page(
                    ctx, error="Type your user id and password.", status=422, provider=provider
                )
            )
        ip = ctx.request.client_ip
        carry: Carry | None = None
        try:
            view, carry = yield from self.flows.start(provider, {"user": user}, ip)
            if view.state == "AwaitingFirstFactor" and events.typed_first_factor(view):
                data = events.first_factor_data(view, [password])
                view, carry = yield from self.flows.send(carry, "submit_first_factor", data, ip)
        except Throttled as exc:
            yield from self._discard(carry)
            return self._throttled(ctx, exc)
        except (IdpError, TransportError) as exc:
            if isinstance(exc, TransportError) or exc.transient:
                yield from self._discard(carry)
                return self._unavailable(ctx, exc, None, "start", {})
            return (yield from self._not_accepted(ctx, provider, exc, carry))
        except StoreUnavailable as exc:
            return self._store_unavailable(ctx, None, exc, step="start")
        except SealedStateTooLarge as exc:
            return self._too_large(ctx, exc)
        # unknown user, EXTERNAL-only account, malformed id; a flow_id option already taken
        except (UsageError, StoreError) as exc:
            return (yield from self._not_accepted(ctx, provider, exc, carry))
        if view.state == "Failed" or (
            view.state == "AwaitingFirstFactor"
            and view.challenge is not None
            and view.challenge.rejected
        ):
            return (yield from self._not_accepted(ctx, provider, None, carry))
        carry = attrs.evolve(carry, user=user)  # "Signing in as <user>" on every page
        if view.state != "AwaitingFirstFactor":
            label = events.provider_label(provider)
            carry = attrs.evolve(carry, who=f"{user}'s password, checked by {label}")
        return (yield from self._started(ctx, view, carry))

    def _begin_here(self, ctx: _Ctx) -> Plan[_Out]:
        """The start page's "Continue as ..." button: begin() after a CSRF check."""
        self._check_csrf(ctx, "")
        self._check_fields(ctx)
        provider = ctx.form.get("provider") or None
        if provider is not None and provider not in self.flows.providers:
            return (
                yield from self._start_page(
                    ctx, error="Choose one of the identity providers.", status=422
                )
            )
        if (yield from self._vouched(ctx)) is None:
            return self._problem(
                ctx,
                "Sign in first",
                "Nobody is signed in to the application, so there is no one to continue as.",
                status=403,
                restart=True,
            )
        return (yield from self._begin(ctx, provider, {}))

    def _begin(self, ctx: _Ctx, provider: str | None, options: Mapping[str, Any]) -> Plan[_Out]:
        user = yield from self._vouched(ctx)
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
        ip = ctx.request.client_ip
        carry: Carry | None = None
        try:
            view, carry = yield from self.flows.start(
                provider, {"verified_user": user, **options}, ip
            )
            carry = attrs.evolve(carry, who=_vouched_who(user), user=user.user_id)
            if vouched_first_factor_due(view):
                # The application vouched: confirming EXTERNAL needs nobody's click.
                view, carry = yield from self.flows.send(carry, "submit_first_factor", {}, ip)
        except Throttled as exc:
            return self._throttled(ctx, exc)
        except (IdpError, TransportError) as exc:
            if carry is not None:  # started: the flow's page offers "Continue" again
                view = yield from self.flows.view(carry)
                return (yield from self._started(ctx, view, carry))
            if isinstance(exc, IdpError) and not exc.transient:
                log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
                return self._problem(
                    ctx,
                    "This account cannot sign in here",
                    "The identity provider did not accept this account for this application.",
                    status=403,
                    restart=True,
                )
            return self._unavailable(ctx, exc, None, "begin", {"provider": provider})
        except StoreUnavailable as exc:
            return self._store_unavailable(ctx, None, exc, step="begin")
        except SealedStateTooLarge as exc:
            return self._too_large(ctx, exc)
        except (UsageError, StoreError) as exc:  # StoreError: a flow_id option already taken
            log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
            return self._problem(
                ctx,
                "This account cannot sign in here",
                "The identity provider offers no sign-in method this application can use.",
                status=403,
                restart=True,
            )
        return (yield from self._started(ctx, view, carry))

    def _flow_page(self, ctx: _Ctx, handle: str) -> Plan[_Out]:
        raw, carry = self._carry(ctx, handle)
        try:
            view = yield from self.flows.view(carry)
        except SealedStateStale as exc:
            return self._superseded(ctx, handle, exc, reload=False)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(ctx, handle, exc)
        except StoreUnavailable as exc:
            return self._store_unavailable(ctx, handle, exc, step="page")
        if _awaits_hand_off(view):
            # The request that completed the flow did not hand it off (the store failed, the
            # connection dropped): this browser holds the flow's cookie, so finish it here.
            return (yield from self._finish_completed(ctx, handle, view, carry, raw))
        if ctx.wants_json:
            return self._poll_json(ctx, handle, view)
        return (yield from self._page(ctx, handle, view, who=carry.who, user=carry.user))

    def _step(self, ctx: _Ctx, handle: str, step: str) -> Plan[_Out]:
        if step == "again":
            return (yield from self._again_step(ctx, handle))
        built = events.EVENTS.get(step)
        if built is None:
            return self._problem(ctx, "Page not found", "There is no such step.", status=404)
        event, build = built
        self._check_csrf(ctx, handle)
        self._check_fields(ctx)
        raw, carry = self._carry(ctx, handle)
        replayed = self._replayed(handle, raw, self._browser(ctx))
        if replayed is not None:
            # The same browser repeats the request that completed this flow (its answer was
            # lost): answer as then, with no engine or IdP call (module docs).
            log.info("mfa_fsm.web.completion_replayed", flow_event=event)
            return self._completed_out(ctx, handle, replayed, landing=False, raw=raw, replay=True)
        form: events.Form = lambda name: ctx.form.get(name, "")  # noqa: E731
        current: FlowView | None = None
        try:
            current = (yield from self.flows.view(carry)) if step in _NEEDS_VIEW else None
            data = build(current, form) if current is not None else {}
            if current is not None and step == "factor" and _running_again(current, data):
                # The running factor picked again ("Try another way", same row): show its
                # challenge again; nothing is sent, nothing refused.
                return (
                    self._poll_json(ctx, handle, current)
                    if ctx.wants_json
                    else _redirect(self._url(ctx, "flow", handle=handle))
                )
            view, new_carry = yield from self.flows.send(carry, event, data, ctx.request.client_ip)
        except (EventNotAllowed, FlowConflict):
            # Another request moved the flow, or this page was stale: show where it is now.
            return (yield from self._current(ctx, handle, carry, raw))
        except InvalidInput as exc:
            return (yield from self._invalid(ctx, handle, current, carry, exc))
        except SealedStateStale as exc:
            # A lost race (double click, two tabs): the winner set the browser's new cookie,
            # which this answer must neither delete nor overwrite.
            return self._superseded(ctx, handle, exc, reload=True)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(ctx, handle, exc)
        except Throttled as exc:
            return (yield from self._throttled_here(ctx, handle, carry, exc, step))
        except (IdpError, TransportError) as exc:
            return (yield from self._idp_failed(ctx, exc, handle, step, carry=carry, form=form))
        except StoreUnavailable as exc:
            return self._store_unavailable(ctx, handle, exc, step=step)
        except (UsageError, StoreError) as exc:
            log.info("mfa_fsm.web.step_refused", flow_event=event, error=type(exc).__name__)
            return (yield from self._current(ctx, handle, carry, raw))
        return (yield from self._stepped(ctx, handle, view, carry, new_carry=new_carry, raw=raw))

    def _again_step(self, ctx: _Ctx, handle: str) -> Plan[_Out]:
        """The failed page's "Try again": the engine's ``again`` for this flow, for the
        application's signed-in user (who must be the flow's user: the engine refuses
        another), then the new flow's page under a new handle."""
        self._check_csrf(ctx, handle)
        self._check_fields(ctx)
        raw, carry = self._carry(ctx, handle)
        user = yield from self._vouched(ctx)
        if user is None:
            return self._problem(
                ctx,
                "Sign in first",
                "Nobody is signed in to the application, so there is no one to try again for.",
                status=403,
                restart=True,
            )
        ip = ctx.request.client_ip
        try:
            view, new_carry = yield from self.flows.again(carry, user, ip)
        except (EventNotAllowed, FlowConflict):
            # The flow has not ended (a stale page): show where it is now.
            return (yield from self._current(ctx, handle, carry, raw))
        except SealedStateStale as exc:
            return self._superseded(ctx, handle, exc, reload=True)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(ctx, handle, exc)
        except Throttled as exc:
            return self._throttled(ctx, exc, handle=handle)
        except (IdpError, TransportError) as exc:
            return self._unavailable(ctx, exc, handle, "again", {})
        except StoreUnavailable as exc:
            return self._store_unavailable(ctx, handle, exc, step="again")
        except (UsageError, StoreError) as exc:
            # Another signed-in user than the flow's, or an ending a new flow would repeat.
            log.info("mfa_fsm.web.again_refused", error=type(exc).__name__)
            return self._problem(
                ctx,
                "This sign-in cannot be tried again",
                "It cannot be tried again from here. Please start again.",
                status=403,
                restart=True,
            )
        new_carry = attrs.evolve(new_carry, who=_vouched_who(user), user=user.user_id)
        return (yield from self._started(ctx, view, new_carry))

    def _stepped(
        self, ctx: _Ctx, handle: str, view: FlowView, carry: Carry, *, new_carry: Carry, raw: str
    ) -> Plan[_Out]:
        """The answer to a step that went through: hand-off and ``on_complete`` if it
        completed the flow, else the flow's page (303) or the poll's JSON."""
        if _awaits_hand_off(view):
            out, new_carry = yield from self._complete(ctx, handle, view, new_carry, raw)
            if new_carry != carry:
                out = _with_cookies(out, [("Set-Cookie", self.flow_cookie(handle, new_carry))])
            return out
        out = (
            self._poll_json(ctx, handle, view)
            if ctx.wants_json
            else _redirect(self._url(ctx, "flow", handle=handle))
        )
        if new_carry != carry:
            out.headers.append(("Set-Cookie", self.flow_cookie(handle, new_carry)))
        return out

    def _idp_failed(
        self,
        ctx: _Ctx,
        exc: IdpError | TransportError,
        handle: str,
        step: str,
        *,
        carry: Carry,
        form: events.Form,
    ) -> Plan[_Out]:
        """A step the IdP did not take: a refused resend says so on its page; anything else
        is the IdP being unavailable (503, with a retry form where no secret was typed)."""
        if step == "resend" and isinstance(exc, IdpError) and not exc.transient:
            # The IdP refused to send again; the code or request already sent still works.
            log.info("mfa_fsm.web.resend_refused")
            if ctx.wants_json:
                return _json(
                    409, message=RESEND_REFUSED, location=self._url(ctx, "flow", handle=handle)
                )
            view = yield from self.flows.view(carry)
            return (
                yield from self._page(
                    ctx,
                    handle,
                    view,
                    notice=RESEND_REFUSED,
                    status=409,
                    who=carry.who,
                    user=carry.user,
                )
            )
        keep = {} if step in _SECRET_STEPS else {k: form(k) for k in ("factor", "delivery")}
        return self._unavailable(ctx, exc, handle, step, keep)

    def _invalid(
        self, ctx: _Ctx, handle: str, current: FlowView | None, carry: Carry, exc: InvalidInput
    ) -> Plan[_Out]:
        """Malformed input: the same form with the message (JSON to a script)."""
        if ctx.wants_json:
            return _json(
                422,
                message=_problem_text(exc),
                field=exc.field,
                location=self._url(ctx, "flow", handle=handle),
            )
        view_now = current or (yield from self.flows.view(carry))
        return (
            yield from self._page(
                ctx, handle, view_now, error=exc, status=422, who=carry.who, user=carry.user
            )
        )

    # -- after a step -----------------------------------------------------------------------

    def _started(self, ctx: _Ctx, view: FlowView, carry: Carry) -> Plan[_Out]:
        handle = secrets.token_urlsafe(9)
        if _awaits_hand_off(view):  # completed at once (no second factor needed)
            out, carry = yield from self._complete(ctx, handle, view, carry, "")
        else:
            out = _redirect(self._url(ctx, "flow", handle=handle))
        cookies = [("Set-Cookie", self.flow_cookie(handle, carry)), *self._old_flow_cookies(ctx)]
        return _with_cookies(out, cookies)

    def _complete(
        self,
        ctx: _Ctx,
        handle: str,
        view: FlowView,
        carry: Carry,
        raw: str,
        *,
        landing: bool = False,
    ) -> Plan[tuple[_Out, Carry]]:
        """Hand off a completed flow's result and answer with ``complete`` set, so the adapter
        calls ``on_complete``; returns the answer and the carry for the flow cookie.
        ``landing``: the flow's own page asked (a reload after a failed hand-off), so without
        ``on_complete``'s response its page is shown, not a 303."""
        # Hand the result off (once: compare-and-set) before on_complete sees it, so the
        # IdP's token leaves the store (or the client's sealed token) whatever happens.
        try:
            view, carry = yield from self.flows.hand_off(carry)
        except SealedStateStale as exc:
            return self._superseded(ctx, handle, exc, reload=not landing), carry
        except (FlowConflict, ResultUnavailable, FlowNotFound, SealedStateError):
            # Another request handed it off first (or it has gone): show where it is.
            return (yield from self._current(ctx, handle, carry, raw, finish=False)), carry
        except Exception as exc:  # any failure of the store's save
            # The store failed (an outage, a timeout): nothing was handed off, the flow is as
            # it was, and the flow's page (or the next poll) hands it off once it is back.
            return self._store_unavailable(ctx, handle, exc), carry
        return self._completed_out(ctx, handle, view, landing=landing, raw=raw), carry

    def _finish_completed(
        self, ctx: _Ctx, handle: str, view: FlowView, carry: Carry, raw: str
    ) -> Plan[_Out]:
        """The flow's page (or a poll) found it completed but not handed off: do it now."""
        out, new_carry = yield from self._complete(ctx, handle, view, carry, raw, landing=True)
        if new_carry != carry:
            out = _with_cookies(out, [("Set-Cookie", self.flow_cookie(handle, new_carry))])
        return out

    def _completed_out(
        self,
        ctx: _Ctx,
        handle: str,
        view: FlowView,
        *,
        landing: bool,
        raw: str,
        replay: bool = False,
    ) -> _Out:
        out = _Out(200, complete=view)
        out.pending = _Pending(ctx.request, handle, view, landing, raw=raw, replay=replay)
        return out

    def _superseded(self, ctx: _Ctx, handle: str, exc: SealedStateStale, *, reload: bool) -> _Out:
        """A request whose sealed token another request superseded (a double click, two tabs):
        the flow is fine and the browser already holds its newest cookie, so this answer sends
        it back to the flow's page and never touches that cookie."""
        log.info("mfa_fsm.web.superseded", error=type(exc).__name__)
        message = "This sign-in moved on in another request or tab. Trying again."
        if ctx.wants_json:
            return _json(409, now=time.time(), retry_after=1, message=message)
        if reload:
            return _redirect(self._url(ctx, "flow", handle=handle))
        # A page load with an outdated cookie: no redirect loop, a link to reload instead.
        return self._problem_page(
            ctx,
            "This page is out of date",
            "This sign-in moved on in another request or tab. Reload to continue.",
            back_url=self._url(ctx, "flow", handle=handle),
            restart=False,
            status=409,
        )

    def _current(
        self, ctx: _Ctx, handle: str, carry: Carry, raw: str, *, finish: bool = True
    ) -> Plan[_Out]:
        if not ctx.wants_json:
            return _redirect(self._url(ctx, "flow", handle=handle))
        try:
            view = yield from self.flows.view(carry)
        except SealedStateStale as exc:
            return self._superseded(ctx, handle, exc, reload=True)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(ctx, handle, exc)
        if finish and _awaits_hand_off(view):
            return (yield from self._finish_completed(ctx, handle, view, carry, raw))
        return self._poll_json(ctx, handle, view)

    def _discard(self, carry: Carry | None) -> Plan[None]:
        if carry is None:
            return
        try:
            yield from self.flows.discard(carry)
        except MfaError as exc:
            # The flow expires on its own; the refusal page matters more.
            log.warning("mfa_fsm.web.discard_failed", error=type(exc).__name__)

    def _not_accepted(
        self, ctx: _Ctx, provider: str, exc: Exception | None, carry: Carry | None
    ) -> Plan[_Out]:
        """The typed form's one refusal: the same page whatever was wrong."""
        yield from self._discard(carry)
        log.info(
            "mfa_fsm.web.start_refused",
            provider=provider,
            error=type(exc).__name__ if exc is not None else "rejected",
        )
        return (yield from self._start_page(ctx, error=NOT_ACCEPTED, status=401, provider=provider))

    # -- completion replay ------------------------------------------------------------------

    def _browser(self, ctx: _Ctx) -> str | None:
        """What binds a replay to the browser: its CSRF cookie's secret, the core's own or
        (when the framework checks CSRF) the framework's as the adapter read it."""
        if ctx.request.framework_csrf is not None:
            return ctx.request.browser or None
        return self._csrf_from_cookie(ctx)

    def _replay_key(self, handle: str, raw: str, browser: str) -> str:
        return hashlib.sha256(f"{handle}\x00{raw}\x00{browser}".encode()).hexdigest()

    def _expire_flow(
        self, handle: str, cookies: Sequence[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """``cookies`` (Set-Cookie pairs) with the flow's own cookie expired instead of set:
        a browser that got the login keeps no flow to resubmit (module docs)."""
        name = self.flow_cookie_prefix + handle
        kept = [(k, v) for k, v in cookies if not v.startswith(f"{name}=")]
        return [*kept, ("Set-Cookie", self._delete_cookie(name))]

    def _remember(self, handle: str, raw: str, browser: str | None, view: FlowView) -> None:
        if self.replay_window <= 0 or self.replay_limit <= 0 or not raw or not browser:
            return
        now = time.monotonic()
        key = self._replay_key(handle, raw, browser)
        with self._replay_lock:
            for old in [k for k, (until, _, _) in self._replays.items() if until <= now]:
                del self._replays[old]
            self._replays[key] = (now + self.replay_window, 0, view)

    def _replayed(self, handle: str, raw: str, browser: str | None) -> FlowView | None:
        if not self._replays or not browser:
            return None
        key = self._replay_key(handle, raw, browser)
        with self._replay_lock:
            found = self._replays.get(key)
            if found is None:
                return None
            until, used, view = found
            if until <= time.monotonic() or used >= self.replay_limit:
                del self._replays[key]
                return None
            if used + 1 >= self.replay_limit:
                del self._replays[key]
            else:
                self._replays[key] = (until, used + 1, view)
            return view

    # -- answers ----------------------------------------------------------------------------

    def _start_again(self, ctx: _Ctx, handle: str, exc: Exception | None) -> _Out:
        if isinstance(exc, SealedStateTooLarge):
            return self._too_large(ctx, exc)
        if exc is not None:
            log.info("mfa_fsm.web.flow_lost", error=type(exc).__name__)
        message = (
            "This sign-in has ended, has expired, or was started in another browser. "
            "Please start again."
        )
        if ctx.wants_json:
            out = _json(410, location=self._url(ctx, "start_page"), message=message)
        else:
            out = self._problem(ctx, "Please start again", message, status=410, restart=True)
        out.headers.append(("Set-Cookie", self._delete_cookie(self.flow_cookie_prefix + handle)))
        return out

    def _throttled(self, ctx: _Ctx, exc: Throttled, *, handle: str | None = None) -> _Out:
        log.warning(
            "mfa_fsm.web.throttled", action=exc.action, scope=exc.scope, retry_after=exc.retry_after
        )
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
        back_url = self._url(ctx, "flow", handle=handle) if handle else None
        heading = "Please wait before trying again"
        return self._wait_answer(
            ctx, 429, wait, heading, message, back_url=back_url, restart=handle is None
        )

    def _throttled_here(
        self, ctx: _Ctx, handle: str, carry: Carry, exc: Throttled, step: str
    ) -> Plan[_Out]:
        """A send ("Send a new code", another factor) refused by a cooldown or throttle: the
        flow's own page again, with an inline notice saying when to ask again (429); nothing
        was sent and the running challenge still works. Other steps, and a script's
        request, get :meth:`_throttled`'s answer."""
        if step not in _SENDING_STEPS or ctx.wants_json:
            return self._throttled(ctx, exc, handle=handle)
        log.warning(
            "mfa_fsm.web.throttled", action=exc.action, scope=exc.scope, retry_after=exc.retry_after
        )
        wait = max(1, round(exc.retry_after))
        if isinstance(exc, ResendTooSoon):
            notice = (
                "Nothing was sent: a new code or request was sent a moment ago and still "
                f"works. You can ask for another in {wait} seconds"
            )
        else:
            notice = (
                f"Nothing was sent: {THROTTLED.get(exc.action, 'Too many attempts').lower()} "
                f"in a short time. Use the one already sent, or try again in {wait} seconds"
            )
        view = yield from self.flows.view(carry)
        out = yield from self._page(
            ctx, handle, view, notice=notice, status=429, who=carry.who, user=carry.user
        )
        out.headers.append(("Retry-After", str(wait)))
        return out

    def _unavailable(
        self,
        ctx: _Ctx,
        exc: IdpError | TransportError,
        handle: str | None,
        step: str,
        keep: Mapping[str, str],
    ) -> _Out:
        log.warning(
            "mfa_fsm.web.idp_unavailable",
            step=step,
            error=type(exc).__name__,
            status=getattr(exc, "status", None),
        )
        retry_after = exc.retry_after
        message = "The identity provider is unavailable right now. Please try again."
        if ctx.wants_json:
            wait = max(1.0, retry_after or 5.0)
            out = _json(
                503,
                now=time.time(),
                retry_after=wait,
                message=f"The identity provider is unavailable; trying again in {wait:.0f} s.",
            )
        else:
            if step == "start":
                # The typed form held a password: back to the form, never a re-send.
                retry_url, back_url = None, self._url(ctx, "start_page")
            elif step == "begin":
                retry_url, back_url = self._url(ctx, "begin"), self._url(ctx, "start_page")
            else:
                assert handle is not None  # noqa: S101 - only a start has no flow yet
                retry_url = self._url(ctx, "step", handle=handle, step=step)
                back_url = self._url(ctx, "flow", handle=handle)
            html = self._render(
                ctx,
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
            out = _Out(503, html)
        if retry_after:
            out.set("Retry-After", str(max(1, round(retry_after))))
        return out

    def _store_unavailable(
        self, ctx: _Ctx, handle: str | None, exc: Exception, *, step: str = "hand_off"
    ) -> _Out:
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
        back_url = self._url(ctx, "flow", handle=handle) if handle else self._url(ctx, "start_page")
        return self._wait_answer(
            ctx, 503, _STORE_RETRY_AFTER, heading, message, back_url=back_url, restart=restart
        )

    def _wait_answer(
        self,
        ctx: _Ctx,
        status: int,
        wait: int,
        heading: str,
        message: str,
        *,
        back_url: str | None,
        restart: bool,
    ) -> _Out:
        """A "come back in ``wait`` seconds" answer (429, 503): the problem page, or JSON for
        the page's script, with ``Retry-After``."""
        if ctx.wants_json:
            out = _json(status, now=time.time(), retry_after=wait, message=message)
        else:
            out = self._problem_page(
                ctx, heading, message, back_url=back_url, restart=restart, status=status
            )
        out.set("Retry-After", str(wait))
        return out

    def _too_large(self, ctx: _Ctx, exc: SealedStateTooLarge) -> _Out:
        """The flow's state would not fit in the browser's cookie (a sealed engine, and an
        IdP that sent a lot: a QR image, many long prompts): the step is not completed here,
        the flow cookie is dropped and the page offers a new start, rather than a cookie the
        browser would silently drop. 507 (RFC 4918 section 11.5: the server cannot store
        what the request needs to complete)."""
        log.warning(
            "mfa_fsm.web.sealed_state_too_large",
            size=exc.size,
            limit=exc.limit,
            route=ctx.request.route,
        )
        out = self._problem(
            ctx,
            "This sign-in cannot continue in this browser",
            "Your identity provider sent more than this site can keep in your browser, so this "
            "step was not completed. Please start again; if it happens again, choose another "
            "sign-in method or contact the site's support.",
            status=507,
            restart=True,
        )
        handle = ctx.request.params.get("handle")
        if isinstance(handle, str) and HANDLE.fullmatch(handle):
            out.headers.append(
                ("Set-Cookie", self._delete_cookie(self.flow_cookie_prefix + handle))
            )
        return out

    def _server_error(self, ctx: _Ctx, exc: BaseException) -> _Out:
        """Any other error: a 500 page (JSON to a script) that shows nothing of the error;
        the log line carries its type and traceback for the operator."""
        log.error("mfa_fsm.web.server_error", error=type(exc).__name__, exc_info=exc)
        return self._problem(
            ctx,
            "Something went wrong",
            "The sign-in could not continue because of an error on this site. Nothing was "
            "sent. Please try again in a moment.",
            status=500,
            restart=True,
        )

    def _problem(
        self, ctx: _Ctx, heading: str, message: str, *, status: int, restart: bool = False
    ) -> _Out:
        if ctx.wants_json:
            answer: dict[str, Any] = {"heading": heading, "message": message}
            if restart:
                answer["location"] = self._url(ctx, "start_page")
            return _json(status, **answer)
        return self._problem_page(
            ctx, heading, message, back_url=None, restart=restart, status=status
        )

    def _problem_page(
        self,
        ctx: _Ctx,
        heading: str,
        message: str,
        *,
        back_url: str | None,
        restart: bool,
        status: int,
    ) -> _Out:
        """The problem page with no retry form: ``heading``, ``message``, and a link back to
        ``back_url`` and/or to the start page (``restart``)."""
        html = self._render(
            ctx,
            "mfa_fsm/problem.html",
            aside_for=None,
            heading=heading,
            message=message,
            retry_url=None,
            retry_fields={},
            back_url=back_url,
            restart=restart,
        )
        return _Out(status, html)

    def _poll_json(self, ctx: _Ctx, handle: str, view: FlowView) -> _Out:
        now = time.time()
        if view.state != "OobPending":
            message = {
                "Completed": "Approved. Signing you in.",
                "Failed": "The request has ended.",
            }.get(view.state, "Continuing.")
            return _json(
                state=view.state, location=self._url(ctx, "flow", handle=handle), message=message
            )
        return _json(
            state=view.state,
            now=now,
            next_poll_at=view.next_poll_at,
            deadline=view.deadline,
            message="Still waiting for your approval.",
            # What the IdP says while it waits (its status message) replaces the page's prompt.
            prompt=view.challenge.prompt if view.challenge is not None else None,
        )

    # -- pages ------------------------------------------------------------------------------

    def _again(
        self, ctx: _Ctx, handle: str, view: FlowView, user: str | None
    ) -> Plan[Mapping[str, str] | None]:
        """The failed page's "Try again" / "Send another push" form (``POST
        /f/<handle>/again``: the engine's ``again`` for this flow, so the same provider
        and the same user) when the flow may start again (``can_start_again``) and the
        application has a signed-in user who is this flow's user; else ``None``."""
        if not can_start_again(view):
            return None
        vouched = yield from self._vouched(ctx)
        if vouched is None or (user is not None and vouched.user_id != user):
            return None
        return {
            "url": self._url(ctx, "step", handle=handle, step="again"),
            "csrf": self._form_token(ctx, handle),
            "provider": view.provider,
            "label": "Send another push" if _push_expired(view) else "Try again",
        }

    def _page(
        self,
        ctx: _Ctx,
        handle: str,
        view: FlowView,
        *,
        error: InvalidInput | None = None,
        status: int = 200,
        who: str | None = None,
        notice: str | None = None,
        user: str | None = None,
    ) -> Plan[_Out]:
        challenge = view.challenge
        again = yield from self._again(ctx, handle, view, user)
        context = {
            "view": view,
            "challenge": challenge,
            "handle": handle,
            "who": who,
            # "Signing in as <user id> - not you?" while the flow runs.
            "signing_in_as": user if not view.is_final else None,
            "action": lambda step: self._url(ctx, "step", handle=handle, step=step),
            "allowed": events.allowed_events(view),
            "typed_first_factor": events.typed_first_factor(view),
            "can_choose": events.can_choose(view),
            "takes_code": events.takes_code(view),
            # A pending push (Entrust TOKENPUSH) that takes no code: switch to the code of
            # the user's token app (Entrust TOKEN) instead, without opening "another way".
            "token_instead": events.token_instead(view),
            "can_resend": events.can_resend(view),
            "notice": notice,
            # A fresh flow for the application's signed-in user, straight to the picker:
            # "send another push" after one expired, "try another way" after any ending,
            # with nothing the application vouched for asked again.
            "again": again,
            "answers_as_list": events.answers_as_list(challenge),
            "failure_text": FAILURES.get(view.failure or "", "The sign-in ended."),
            "next_steps": events.next_steps(view),
            "error": _problem_text(error) if error is not None else None,
            "error_field": error.field if error is not None else None,
            "now": time.time(),
            "clock": _clock,
        }
        html = self._render(ctx, STATE_TEMPLATES[view.state], aside_for=view, **context)
        return _Out(status, html)

    def _start_page(
        self, ctx: _Ctx, *, error: str | None = None, status: int = 200, provider: str | None = None
    ) -> Plan[_Out]:
        if error is not None and ctx.wants_json:
            return _json(status, message=error)
        # begin()'s default provider (the first whose first factor may be the application's)
        # first: the "Continue as" button that gets the focus.
        ordered = sorted(self.flows.providers, key=lambda p: not self.flows.first_factor_outside(p))
        providers = [(p, events.provider_label(p)) for p in ordered]
        vouched = yield from self._vouched(ctx)
        html = self._render(
            ctx,
            "mfa_fsm/start.html",
            aside_for=None,
            providers=providers,
            # The typed form's choices: providers whose IdP checks the typed password.
            typed_providers=[
                (p, events.provider_label(p))
                for p in self.flows.providers
                if self.flows.idp_checks_password(p)
            ],
            chosen=provider,
            vouched=vouched,
            outside=[p for p, _ in providers if self.flows.first_factor_outside(p)],
            error=error,
            begin_url=self._url(ctx, "begin"),
        )
        return _Out(status, html)

    def _render(
        self, ctx: _Ctx, template: str, *, aside_for: FlowView | None, **context: Any
    ) -> bytes:
        aside = self.aside(aside_for) if self.aside is not None else None
        handle = context.get("handle") or ""
        mount = ctx.request.mount
        csrf = self._form_token(ctx, handle)
        csrf_name = ctx.request.framework_csrf[0] if ctx.request.framework_csrf else "csrf_token"
        html = self.jinja.get_template(template).render(
            title=self.title,
            csrf=csrf,
            csrf_name=csrf_name,
            # The whole hidden field, for templates that write {{ csrf_field }} in a form.
            csrf_field=Markup('<input type="hidden" name="{}" value="{}">').format(csrf_name, csrf),
            start_url=self.url(mount, "start_page"),
            static=lambda name: self.url(mount, "static", filename=name),
            provider_label=events.provider_label,
            aside=Markup(aside) if aside else None,  # noqa: S704 - the app's own trusted HTML
            **context,
        )
        return html.encode()

    def _url(self, ctx: _Ctx, route: str, **values: str) -> str:
        return self.url(ctx.request.mount, route, **values)

    # -- requests ---------------------------------------------------------------------------

    def _check_fields(self, ctx: _Ctx) -> None:
        """Refuse a form of more than :data:`MAX_FORM_PARTS` fields or with a field over
        ``max_field_chars`` (413), without repeating it."""
        if len(ctx.request.form) > MAX_FORM_PARTS:
            log.warning("mfa_fsm.web.too_many_fields", route=ctx.request.route)
            raise _Refused(
                self._problem(
                    ctx,
                    "Too much data",
                    f"The form has more than {MAX_FORM_PARTS} fields, more than a sign-in "
                    "needs, so nothing was done with it. Go back and try again.",
                    status=413,
                    restart=True,
                )
            )
        for name, value in ctx.request.form:
            if len(value) > self.max_field_chars or len(name) > 64:
                log.warning("mfa_fsm.web.field_too_long", route=ctx.request.route)
                raise _Refused(
                    self._problem(
                        ctx,
                        "Too much data",
                        f"A field of the form is longer than {self.max_field_chars} "
                        "characters, so nothing was done with it. Go back and try again.",
                        status=413,
                        restart=True,
                    )
                )

    # -- cookies ----------------------------------------------------------------------------

    def _signer(self, purpose: str) -> URLSafeTimedSerializer:
        key = self.secret_key() if callable(self.secret_key) else self.secret_key
        if not key:
            raise UsageError(
                "the login pages sign their cookies with a secret key: set it to a long "
                "random value from the application's secrets"
            )
        return URLSafeTimedSerializer(key, salt=f"mfa_fsm.web.{purpose}")

    def _csrf_secret(self, ctx: _Ctx) -> str:
        """The browser's random CSRF value (from its cookie, or new for this answer)."""
        if ctx.csrf_secret is None:
            value = self._csrf_from_cookie(ctx)
            if value is None:
                value = secrets.token_urlsafe(32)
                ctx.new_csrf = value
            ctx.csrf_secret = value
        return ctx.csrf_secret

    def _form_token(self, ctx: _Ctx, handle: str) -> str:
        """A page's CSRF token: bound to this browser's cookie and to the flow's handle
        (``""`` on the start page), and valid for ``csrf_max_age`` seconds (OWASP CSRF
        Prevention Cheat Sheet, "signed double-submit cookie"). The framework's own token
        when the framework checks CSRF."""
        if ctx.request.framework_csrf is not None:
            return ctx.request.framework_csrf[1]
        return self._signer("csrf-form").dumps([_digest(self._csrf_secret(ctx)), handle])

    def _csrf_from_cookie(self, ctx: _Ctx) -> str | None:
        raw = ctx.request.cookies.get(self.csrf_cookie)
        if not raw:
            return None
        try:
            value = self._signer("csrf").loads(raw)
        except BadData:
            return None
        return value if isinstance(value, str) else None

    def _check_csrf(self, ctx: _Ctx, handle: str) -> None:
        if ctx.request.framework_csrf is not None:
            return  # the framework checked it before the request reached the core
        secret = self._csrf_from_cookie(ctx)
        sent = ctx.form.get("csrf_token") or ctx.request.headers.get("x-csrf-token") or ""
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
        log.warning("mfa_fsm.web.csrf_refused", route=ctx.request.route)
        message = (
            "This form could not be accepted: it has expired, or it was sent from another "
            "site. Nothing was changed. Go back, reload the page and try again."
        )
        if ctx.wants_json and handle:
            out = _json(400, message=message, location=self._url(ctx, "flow", handle=handle))
        else:
            out = self._problem(ctx, "The form has expired", message, status=400, restart=True)
        raise _Refused(out)

    def _carry(self, ctx: _Ctx, handle: str) -> tuple[str, Carry]:
        """The flow cookie's raw value and what it carries; refused with "start again"."""
        raw = ctx.request.cookies.get(self.flow_cookie_prefix + handle)
        data: Any = None
        if raw:
            try:
                data = self._signer("flow").loads(raw, max_age=self.max_age)
            except BadData:
                data = None
        if (
            raw
            and isinstance(data, dict)
            and data.get("h") == handle
            and isinstance(data.get("f"), str)
            and isinstance(data.get("t"), str | None)
            and isinstance(data.get("w"), str | None)
            and isinstance(data.get("u"), str | None)
        ):
            return raw, Carry(data["f"], data.get("t"), data.get("w"), data.get("u"))
        if raw is None and self.secure and not ctx.request.secure:
            # The usual cause: a browser (or client) never sends a Secure cookie back over
            # plain HTTP. Say it to the operator; the page says only "start again".
            log.warning(
                "mfa_fsm.web.flow_cookie_missing_over_http",
                hint="secure cookies are not sent over plain HTTP: serve over HTTPS (with "
                "your framework's proxy-headers support behind a TLS proxy), or pass "
                "secure_cookies=False for plain-HTTP local development",
            )
        raise _Refused(self._start_again(ctx, handle, None))

    def _delete_cookie(self, name: str) -> str:
        return cookie_header(name, "", max_age=0, secure=self.secure)

    def _old_flow_cookies(self, ctx: _Ctx) -> list[tuple[str, str]]:
        """Keep the newest flow cookies only: every one travels with every request."""
        aged = []
        for name, raw in ctx.request.cookies.items():
            if name.startswith(self.flow_cookie_prefix):
                try:
                    _, signed_at = self._signer("flow").loads(raw, return_timestamp=True)
                except BadData:
                    signed_at = None
                aged.append((signed_at.timestamp() if signed_at else 0.0, name))
        return [
            ("Set-Cookie", self._delete_cookie(name))
            for _, name in sorted(aged, reverse=True)[MAX_FLOW_COOKIES - 1 :]
        ]


def _without_io(plan: Plan[_Out]) -> _Out:
    """Run a plan that needs no I/O here (a completed flow's page asks nobody)."""
    try:
        io = next(plan)
    except StopIteration as stop:
        done: _Out = stop.value
        return done
    plan.close()
    raise UsageError(f"a page needed I/O ({type(io).__name__}) where none was expected")


def _awaits_hand_off(view: FlowView) -> bool:
    """Whether ``view`` is a completed flow whose result the application has not had yet."""
    return view.state == "Completed" and view.result is not None and not view.result.handed_off


def _running_again(view: FlowView, data: Mapping[str, Any]) -> bool:
    """Whether a ``select_second_factor`` pick names the challenge already running (same
    factor, and the same delivery when the pick gives one): nothing to send."""
    challenge = view.challenge
    if view.state not in ("SecondFactorSelected", "OobPending") or challenge is None:
        return False
    if data.get("factor") != challenge.factor:
        return False
    delivery = data.get("delivery")
    return not delivery or challenge.delivery is None or delivery == challenge.delivery


def _push_expired(view: FlowView) -> bool:
    """Whether ``view`` ended because a push (or other device request) went unanswered."""
    challenge = view.challenge
    return view.failure == "expired" and challenge is not None and challenge.kind == "push"


def _vouched_who(user: VerifiedUser) -> str:
    """The pages' "checked by" line for a user the application vouched for."""
    return f"{user.user_id}, checked by {user.checked_by}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _problem_text(exc: InvalidInput) -> str:
    """The problem part of an InvalidInput message (it never repeats the value)."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _clock(epoch: float | None) -> str:
    """Epoch seconds as the server's local time of day, for "expires at" lines."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) if epoch else ""
