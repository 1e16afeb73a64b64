"""A Flask blueprint that runs mfa_fsm logins: one route per step, nothing kept in memory.

::

    app = Flask(__name__)
    app.secret_key = ...                                   # signs the two cookies below
    engine = Engine(SqlStore("sqlite:///flows.db"), [EntrustConfig(...), CyberArkConfig(...)])
    app.register_blueprint(mfa_blueprint(engine, on_complete=sign_in), url_prefix="/login")

Routes, under the blueprint's prefix::

    GET  /                     start page: provider and user id
    POST /                     start a flow (Engine.start); 303 to its page
    GET  /f/<handle>           the page of the flow's current state (a reload resumes here)
    POST /f/<handle>/first-factor   submit_first_factor   each: one event, then 303 back to
    POST /f/<handle>/factor         select_second_factor  the flow's page (or, for a poll
    POST /f/<handle>/response       submit_response       sent by the page's script, a small
    POST /f/<handle>/poll           poll                  JSON answer)
    POST /f/<handle>/cancel         cancel

How state travels. Each flow started in a browser gets a random *handle* (in its URLs) and a
cookie of its own, ``mfa_fsm_flow``, whose ``Path`` is that flow's URL: the browser sends
each flow's cookie only with that flow's requests, so two tabs run two flows side by side.
The cookie holds, signed with ``app.secret_key``, the flow id (an :class:`Engine`: the
snapshot stays in its store) or the flow id and the sealed token (a :class:`SealedEngine`:
the snapshot is the token). The handle is not a secret; the flow id never appears in a URL or
a page. A second cookie, ``mfa_fsm_csrf``, holds a signed random token that every form
carries back (and the polling script sends as ``X-CSRF-Token``); a POST without it is refused
with 400. Both cookies are HttpOnly and SameSite=Lax, and Secure unless ``secure_cookies``
is false (plain-HTTP loopback demos only).

Errors become pages, and never change the flow: an event the state does not take, or a
request that lost a race, re-renders the current state; malformed input shows the same form
with the message; an unknown, expired or tampered flow shows "start again"; an IdP or network
failure shows "the identity provider is unavailable" with a button that tries again. No page,
log line or error shows a password, code, token, flow id or cookie.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

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
from werkzeug.wrappers import Response as BaseResponse

from mfa_fsm.core.errors import (
    EventNotAllowed,
    FlowConflict,
    FlowNotFound,
    IdpError,
    InvalidInput,
    ResultUnavailable,
    SealedStateError,
    SnapshotError,
    TransportError,
    UsageError,
)
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.web import events

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
}

#: Steps whose data is built from the current view (the challenge's kind and questions).
_NEEDS_VIEW = frozenset({"first-factor", "factor", "response"})
#: Steps whose form carries a secret: their retry button goes back to the form instead of
#: re-sending (a page never holds a typed secret).
_SECRET_STEPS = frozenset({"first-factor", "response"})

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

OnComplete = Callable[[FlowView], "ResponseReturnValue | None"]
Aside = Callable[[FlowView | None], "str | None"]


@attrs.frozen
class _Carry:
    """What the flow cookie carries: the flow id, and the sealed token for a SealedEngine."""

    flow_id: str = attrs.field(repr=False)
    token: str | None = attrs.field(default=None, repr=False)


class _Flows(Protocol):
    providers: tuple[str, ...]

    def start(self, provider: str, options: Mapping[str, Any]) -> tuple[FlowView, _Carry]: ...

    def send(
        self, carry: _Carry, event: str, data: Mapping[str, Any]
    ) -> tuple[FlowView, _Carry]: ...

    def view(self, carry: _Carry) -> FlowView: ...

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]: ...


class _StoredFlows:
    """Flows in a server-side store: the cookie carries the flow id only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.providers = engine.providers

    def start(self, provider: str, options: Mapping[str, Any]) -> tuple[FlowView, _Carry]:
        view = self.engine.start(provider, **options)
        return view, _Carry(view.flow_id)

    def send(self, carry: _Carry, event: str, data: Mapping[str, Any]) -> tuple[FlowView, _Carry]:
        return self.engine.send(carry.flow_id, event, **data), carry

    def view(self, carry: _Carry) -> FlowView:
        return self.engine.view(carry.flow_id)

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]:
        return self.engine.hand_off(carry.flow_id), carry


class _SealedFlows:
    """Flows sealed client-side: the cookie carries the flow id and the sealed token."""

    def __init__(self, engine: SealedEngine) -> None:
        self.engine = engine
        self.providers = engine.providers

    def start(self, provider: str, options: Mapping[str, Any]) -> tuple[FlowView, _Carry]:
        view, token = self.engine.start(provider, **options)
        return view, _Carry(view.flow_id, token)

    def send(self, carry: _Carry, event: str, data: Mapping[str, Any]) -> tuple[FlowView, _Carry]:
        view, token = self.engine.send(_token(carry), carry.flow_id, event, **data)
        return view, _Carry(carry.flow_id, token)

    def view(self, carry: _Carry) -> FlowView:
        return self.engine.view(_token(carry), carry.flow_id)

    def hand_off(self, carry: _Carry) -> tuple[FlowView, _Carry]:
        view, token = self.engine.hand_off(_token(carry), carry.flow_id)
        return view, _Carry(carry.flow_id, token)


def _token(carry: _Carry) -> str:
    if carry.token is None:
        raise SealedStateError("the flow cookie holds no sealed state; start again")
    return carry.token


class _Refused(Exception):
    """A request the blueprint answers with a problem page (CSRF, lost flow)."""

    def __init__(self, response: BaseResponse) -> None:
        self.response = response


def mfa_blueprint(
    engine: Engine | SealedEngine,
    *,
    name: str = "mfa_fsm",
    secure_cookies: bool = True,
    on_complete: OnComplete | None = None,
    aside: Aside | None = None,
    cookie_prefix: str = "mfa_fsm",
    cookie_max_age: int = 3600,
    title: str = "Sign in",
) -> Blueprint:
    """A blueprint with the login pages for every provider ``engine`` runs; mount it with
    ``app.register_blueprint(bp, url_prefix=...)``. The app must set ``secret_key``.

    ``on_complete(view)`` is called once, in the request whose step completed the flow;
    ``view.result`` holds the IdP's token for the application's session. Before it is called
    the result is handed off (``Engine.hand_off``): the store keeps no token afterwards, only
    what the final page shows, for one store margin. Without ``on_complete`` the result is
    erased all the same, unseen. It may return a
    response (a redirect into the application); by default the success page is shown.
    ``aside(view)`` may return trusted HTML shown beside every page (``None`` on the start
    page); the demo puts the live diagram there. ``secure_cookies=False`` is for plain-HTTP
    loopback only. ``cookie_max_age`` bounds how long a browser keeps a flow's cookie; the
    store (or the sealed token) decides how long the flow itself lives.
    """
    flows: _Flows = (
        _SealedFlows(engine) if isinstance(engine, SealedEngine) else (_StoredFlows(engine))
    )
    web = _Web(
        flows,
        secure=secure_cookies,
        on_complete=on_complete,
        aside=aside,
        prefix=cookie_prefix,
        max_age=cookie_max_age,
        title=title,
    )
    bp = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/_mfa_fsm_static",
    )
    bp.add_url_rule("/", "start_page", web.start_page, methods=["GET"])
    bp.add_url_rule("/", "start", web.start, methods=["POST"])
    bp.add_url_rule("/f/<handle>", "flow", web.flow_page, methods=["GET"])
    bp.add_url_rule("/f/<handle>/<step>", "step", web.step, methods=["POST"])
    bp.before_request(web.check_setup)
    bp.after_request(web.finish)
    return bp


class _Web:
    """The view functions; everything they know between requests is in the two cookies."""

    def __init__(
        self,
        flows: _Flows,
        *,
        secure: bool,
        on_complete: OnComplete | None,
        aside: Aside | None,
        prefix: str,
        max_age: int,
        title: str,
    ) -> None:
        self.flows = flows
        self.secure = secure
        self.on_complete = on_complete
        self.aside = aside
        self.flow_cookie = f"{prefix}_flow"
        self.csrf_cookie = f"{prefix}_csrf"
        self.max_age = max_age
        self.title = title

    # -- routes ---------------------------------------------------------------------------

    def start_page(self) -> ResponseReturnValue:
        return self._start_page()

    def start(self) -> ResponseReturnValue:
        try:
            self._check_csrf()
        except _Refused as refused:
            return refused.response
        provider = request.form.get("provider", "")
        user = request.form.get("user", "").strip()
        if provider not in self.flows.providers:
            return self._start_page(error="Choose one of the identity providers.", status=422)
        try:
            view, carry = self.flows.start(provider, events.start_options(provider, user))
        except InvalidInput as exc:
            return self._start_page(error=f"User id: {_problem(exc)}.", status=422, user=user)
        except IdpError as exc:
            if not exc.transient:
                log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
                message = "The identity provider did not accept this user id."
                return self._start_page(error=message, status=422, user=user)
            return self._unavailable(exc, None, "start", {"provider": provider, "user": user})
        except TransportError as exc:
            return self._unavailable(exc, None, "start", {"provider": provider, "user": user})
        except UsageError as exc:
            log.info("mfa_fsm.web.start_refused", provider=provider, error=type(exc).__name__)
            message = "This user cannot sign in here with this identity provider."
            return self._start_page(error=message, status=422, user=user)
        handle = secrets.token_urlsafe(9)
        response, carry = self._after_step(handle, view, carry, wants_json=False)
        self._set_flow_cookie(response, handle, carry)
        return response

    def flow_page(self, handle: str) -> ResponseReturnValue:
        try:
            carry = self._carry(handle)
            view = self.flows.view(carry)
        except _Refused as refused:
            return refused.response
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc)
        return self._page(handle, view)

    def step(self, handle: str, step: str) -> ResponseReturnValue:
        built = events.EVENTS.get(step)
        if built is None:
            return self._problem("Page not found", "There is no such step.", status=404)
        event, build = built
        wants_json = step == "poll" and request.accept_mimetypes.best == "application/json"
        try:
            self._check_csrf(handle, wants_json=wants_json)
            carry = self._carry(handle, wants_json=wants_json)
        except _Refused as refused:
            return refused.response
        form: events.Form = lambda name: request.form.get(name, "")  # noqa: E731
        current: FlowView | None = None
        try:
            if step in _NEEDS_VIEW:
                current = self.flows.view(carry)
            data = build(current, form) if current is not None else {}
            view, new_carry = self.flows.send(carry, event, data)
        except (EventNotAllowed, FlowConflict):
            # Another request moved the flow, or this page was stale: show where it is now.
            return self._current(handle, carry, wants_json)
        except InvalidInput as exc:
            return self._page(handle, current or self.flows.view(carry), error=exc, status=422)
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc, wants_json=wants_json)
        except (IdpError, TransportError) as exc:
            keep = {} if step in _SECRET_STEPS else {k: form(k) for k in ("factor", "delivery")}
            return self._unavailable(exc, handle, step, keep, wants_json=wants_json)
        except UsageError as exc:
            log.info("mfa_fsm.web.step_refused", flow_event=event, error=type(exc).__name__)
            return self._current(handle, carry, wants_json)
        response, new_carry = self._after_step(handle, view, new_carry, wants_json=wants_json)
        if new_carry != carry:
            self._set_flow_cookie(response, handle, new_carry)
        return response

    def check_setup(self) -> None:
        """Refuse to serve without a key to sign the cookies with, saying what to set."""
        if not current_app.secret_key:
            raise RuntimeError(
                "mfa_fsm's blueprint signs its cookies with app.secret_key: set it to a long "
                "random value from the application's secrets"
            )

    def finish(self, response: Response) -> Response:
        """Security headers on every response of the blueprint, and the CSRF cookie if new."""
        token = g.get("mfa_fsm_new_csrf")
        if token is not None:
            response.set_cookie(
                self.csrf_cookie,
                self._signer("csrf").dumps(token),
                path=url_for(".start_page"),
                secure=self.secure,
                httponly=True,
                samesite="Lax",
            )
        if request.endpoint != f"{request.blueprint}.static":
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # -- after a step -------------------------------------------------------------------

    def _after_step(
        self, handle: str, view: FlowView, carry: _Carry, *, wants_json: bool
    ) -> tuple[BaseResponse, _Carry]:
        if view.state == "Completed":
            # Hand the result off (once: compare-and-set) before on_complete sees it, so the
            # IdP's token leaves the store (or the client's sealed token) whatever happens.
            try:
                view, carry = self.flows.hand_off(carry)
            except (FlowConflict, ResultUnavailable, FlowNotFound, SealedStateError):
                # Another request handed it off first (or it has gone): show where it is.
                return self._current(handle, carry, wants_json), carry
            if self.on_complete is not None:
                custom = self.on_complete(view)
                if custom is not None:
                    return make_response(custom), carry
        if wants_json:
            return self._poll_json(handle, view), carry
        return redirect(url_for(".flow", handle=handle), code=303), carry

    def _poll_json(self, handle: str, view: FlowView) -> Response:
        now = time.time()
        if view.state != "OobPending":
            message = {
                "Completed": "Approved. Signing you in.",
                "Failed": "The request has ended.",
            }.get(view.state, "Continuing.")
            return jsonify(
                state=view.state, location=url_for(".flow", handle=handle), message=message
            )
        return jsonify(
            state=view.state,
            now=now,
            next_poll_at=view.next_poll_at,
            deadline=view.deadline,
            message="Still waiting for your approval.",
        )

    def _current(self, handle: str, carry: _Carry, wants_json: bool) -> BaseResponse:
        if not wants_json:
            return redirect(url_for(".flow", handle=handle), code=303)
        try:
            return self._poll_json(handle, self.flows.view(carry))
        except (FlowNotFound, SnapshotError, SealedStateError) as exc:
            return self._start_again(handle, exc, wants_json=True)

    # -- pages ----------------------------------------------------------------------------

    def _page(
        self,
        handle: str,
        view: FlowView,
        *,
        error: InvalidInput | None = None,
        status: int = 200,
    ) -> Response:
        challenge = view.challenge
        context = {
            "view": view,
            "challenge": challenge,
            "handle": handle,
            "action": lambda step: url_for(".step", handle=handle, step=step),
            "allowed": events.allowed_events(view),
            "typed_first_factor": events.typed_first_factor(view),
            "can_choose": events.can_choose(view),
            "takes_code": events.takes_code(view),
            "answers_as_list": events.answers_as_list(view.provider, challenge),
            "failure_text": FAILURES.get(view.failure or "", "The sign-in ended."),
            "error": _problem(error) if error is not None else None,
            "error_field": error.field if error is not None else None,
            "now": time.time(),
            "clock": _clock,
        }
        html = self._render(STATE_TEMPLATES[view.state], aside_for=view, **context)
        return make_response(html, status)

    def _start_page(
        self, *, error: str | None = None, status: int = 200, user: str = ""
    ) -> Response:
        providers = [(p, events.provider_label(p)) for p in self.flows.providers]
        html = self._render(
            "mfa_fsm/start.html", aside_for=None, providers=providers, error=error, user=user
        )
        return make_response(html, status)

    def _start_again(
        self, handle: str, exc: Exception | None, *, wants_json: bool = False
    ) -> Response:
        if exc is not None:
            log.info("mfa_fsm.web.flow_lost", error=type(exc).__name__)
        message = (
            "This sign-in has ended, has expired, or was started in another browser. "
            "Please start again."
        )
        if wants_json:
            response = jsonify(location=url_for(".start_page"), message=message)
            response.status_code = 410
        else:
            response = self._problem("Please start again", message, status=410, restart=True)
        response.delete_cookie(
            self.flow_cookie,
            path=url_for(".flow", handle=handle),
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
        return response

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
                retry_url, back_url = url_for(".start"), url_for(".start_page")
            else:
                assert handle is not None  # noqa: S101 - only a start has no flow yet
                retry_url = url_for(".step", handle=handle, step=step)
                back_url = url_for(".flow", handle=handle)
            html = self._render(
                "mfa_fsm/problem.html",
                aside_for=None,
                heading="The identity provider is unavailable",
                message=message,
                retry_url=None if step in _SECRET_STEPS else retry_url,
                retry_fields=dict(keep),
                back_url=back_url,
                restart=False,
            )
            response = make_response(html, 503)
        if retry_after:
            response.headers["Retry-After"] = str(max(1, round(retry_after)))
        return response

    def _problem(
        self, heading: str, message: str, *, status: int, restart: bool = False
    ) -> Response:
        html = self._render(
            "mfa_fsm/problem.html",
            aside_for=None,
            heading=heading,
            message=message,
            retry_url=None,
            retry_fields={},
            back_url=None,
            restart=restart,
        )
        return make_response(html, status)

    def _render(self, template: str, *, aside_for: FlowView | None, **context: Any) -> str:
        aside = self.aside(aside_for) if self.aside is not None else None
        return render_template(
            template,
            title=self.title,
            csrf=self._csrf_token(),
            start_url=url_for(".start_page"),
            static=lambda name: url_for(".static", filename=name),
            provider_label=events.provider_label,
            aside=Markup(aside) if aside else None,  # noqa: S704 - the app's own trusted HTML
            **context,
        )

    # -- cookies --------------------------------------------------------------------------

    def _signer(self, purpose: str) -> URLSafeTimedSerializer:
        key = current_app.secret_key
        assert key  # noqa: S101 - check_setup refused the request otherwise; narrows for mypy
        return URLSafeTimedSerializer(key, salt=f"mfa_fsm.web.{purpose}")

    def _csrf_token(self) -> str:
        token: str | None = g.get("mfa_fsm_csrf")
        if token is None:
            token = self._csrf_from_cookie()
            if token is None:
                token = secrets.token_urlsafe(32)
                g.mfa_fsm_new_csrf = token
            g.mfa_fsm_csrf = token
        return token

    def _csrf_from_cookie(self) -> str | None:
        raw = request.cookies.get(self.csrf_cookie)
        if not raw:
            return None
        try:
            token = self._signer("csrf").loads(raw)
        except BadData:
            return None
        return token if isinstance(token, str) else None

    def _check_csrf(self, handle: str | None = None, *, wants_json: bool = False) -> None:
        expected = self._csrf_from_cookie()
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if expected and hmac.compare_digest(sent.encode(), expected.encode()):
            return
        log.warning("mfa_fsm.web.csrf_refused", endpoint=request.endpoint)
        message = (
            "This form could not be accepted: it has expired, or it was sent from another "
            "site. Nothing was changed. Go back, reload the page and try again."
        )
        if wants_json:
            response = jsonify(message=message, location=url_for(".flow", handle=handle))
            response.status_code = 400
        else:
            response = self._problem("The form has expired", message, status=400, restart=True)
        raise _Refused(response)

    def _carry(self, handle: str, *, wants_json: bool = False) -> _Carry:
        raw = request.cookies.get(self.flow_cookie)
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
        ):
            return _Carry(data["f"], data.get("t"))
        raise _Refused(self._start_again(handle, None, wants_json=wants_json))

    def _set_flow_cookie(self, response: BaseResponse, handle: str, carry: _Carry) -> None:
        payload: dict[str, str] = {"h": handle, "f": carry.flow_id}
        if carry.token is not None:
            payload["t"] = carry.token
        response.set_cookie(
            self.flow_cookie,
            self._signer("flow").dumps(payload),
            max_age=self.max_age,
            path=url_for(".flow", handle=handle),
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )


def _problem(exc: InvalidInput) -> str:
    """The problem part of an InvalidInput message (it never repeats the value)."""
    text = str(exc)
    prefix = f"{exc.field}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _clock(epoch: float | None) -> str:
    """Epoch seconds as the server's local time of day, for "expires at" lines."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) if epoch else ""
