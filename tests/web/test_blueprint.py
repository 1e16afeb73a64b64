"""The login blueprint through Flask's test client: CSRF, cookies, error pages, secrets."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, redirect

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    EntrustConfig,
    EventNotAllowed,
    FlowBusy,
    FlowConflict,
    FlowView,
    MemoryStore,
    SealedEngine,
    SnapshotError,
    StoreLedger,
    TransportError,
    UsageError,
    VerifiedUserRequired,
)
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator, SecretRecorder
from mfa_fsm.testing.entrust import DEMO_KBA, DEMO_TOKEN_CODE
from mfa_fsm.web import mfa_blueprint
from mfa_fsm.web.blueprint import MfaBlueprint
from tests.support.web import (
    CSRF_COOKIE,
    PREFIX,
    Visitor,
    flow_cookie,
    heading,
    make_app,
    set_cookies,
    state,
)


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


def configs(entrust: EntrustEmulator, cyberark: CyberArkEmulator) -> list[object]:
    return [
        EntrustConfig(base_url=entrust.base_url, application_id=entrust.application_id),
        CyberArkConfig(base_url=cyberark.base_url, pod_scheme="http"),
    ]


@pytest.fixture
def engine(entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator) -> Engine:
    return Engine(MemoryStore(), configs(entrust_emulator, cyberark_emulator))


@pytest.fixture
def app(engine: Engine) -> Flask:
    return make_app(engine)


@pytest.fixture
def visitor(app: Flask) -> Visitor:
    return Visitor(app.test_client())


def flow_id_of(engine: Engine, visitor: Visitor) -> str:
    """The flow id the visitor's cookie names (the test's own store knows only one flow)."""
    store = engine.store
    assert isinstance(store, MemoryStore)
    (flow_id,) = store._records
    return str(flow_id)


# -- CSRF -------------------------------------------------------------------------------


def test_start_without_csrf_token_is_refused(
    visitor: Visitor, entrust_emulator: EntrustEmulator
) -> None:
    """A POST without the form's token, or with a wrong one, gets 400 and calls no IdP."""
    visitor.get(f"{PREFIX}/")
    for token in ("", "forged"):
        response = visitor.post(
            f"{PREFIX}/", provider="entrust", user="pwuser", password="x", csrf_token=token
        )
        assert response.status_code == 400
        assert heading(response) == "The form has expired"
        assert "sent from another site" in response.get_data(as_text=True)
    assert entrust_emulator.calls_to("/authentication/users") == []


def test_step_without_csrf_token_changes_nothing(visitor: Visitor, engine: Engine) -> None:
    """A step POST with a wrong token is refused with 400; the flow is as it was."""
    visitor.begin("entrust", "jsmith")
    flow_id = flow_id_of(engine, visitor)
    response = visitor.step("factor", factor="TOKEN", csrf_token="forged")
    assert response.status_code == 400
    assert engine.view(flow_id).state == "AwaitingSecondFactor"
    assert engine.view(flow_id).version == 1


def test_csrf_token_is_bound_to_its_flow_and_expires(
    engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """A page's CSRF token works for its own flow only, and not after csrf_max_age."""
    visitor = Visitor(make_app(engine, csrf_max_age=60).test_client())
    visitor.begin("entrust", "jsmith")
    first_url, first_token = visitor.flow_url, visitor.csrf
    visitor.begin("entrust", "jsmith")
    assert visitor.flow_url != first_url
    calls = len(entrust_emulator.calls)
    refused = visitor.step("factor", factor="TOKEN", csrf_token=first_token)
    assert refused.status_code == 400
    assert len(entrust_emulator.calls) == calls
    original = time.time
    try:
        time.time = lambda: original() + 61  # itsdangerous reads time.time
        expired = visitor.step("factor", factor="TOKEN")
    finally:
        time.time = original
    assert expired.status_code == 400
    assert heading(expired) == "The form has expired"
    assert visitor.step("factor", factor="TOKEN").status_code == 303


def test_csrf_cookie_from_another_app_is_refused(engine: Engine) -> None:
    """The CSRF cookie is signed: one signed with another key does not count."""
    first, second = make_app(engine), make_app(engine)
    second.secret_key = "another-secret-key-0123456789-0123456789"
    visitor = Visitor(first.test_client())
    visitor.get(f"{PREFIX}/")
    stranger = Visitor(second.test_client())
    cookie = visitor.client.get_cookie(CSRF_COOKIE, path="/")
    assert cookie is not None
    stranger.client.set_cookie(CSRF_COOKIE, cookie.value)
    response = stranger.post(
        f"{PREFIX}/", provider="entrust", user="pwuser", password="x", csrf_token=visitor.csrf
    )
    assert response.status_code == 400


def test_poll_json_without_csrf_header_is_refused(visitor: Visitor) -> None:
    """The polling script's POST needs the X-CSRF-Token header too (JSON 400 otherwise)."""
    visitor.begin("entrust", "pushmc")
    visitor.step("factor", factor="TOKENPUSH")
    response = visitor.poll_json(csrf="forged")
    assert response.status_code == 400
    assert response.is_json
    assert response.get_json()["location"] == visitor.flow_url


# -- cookies ----------------------------------------------------------------------------


def test_cookie_attributes(visitor: Visitor) -> None:
    """Both cookies carry the __Host- prefix (Secure, Path=/, no Domain), HttpOnly and
    SameSite=Lax; each flow has a cookie of its own, so two tabs keep two flows."""
    csrf = set_cookies(visitor.get(f"{PREFIX}/"), CSRF_COOKIE)
    visitor.begin("entrust", "jsmith")
    first = visitor.flow_url
    began = visitor.begin("entrust", "jsmith")
    flow = set_cookies(began, flow_cookie(visitor))
    assert len(csrf) == 1
    assert len(flow) == 1
    for header in (csrf[0], flow[0]):
        assert "HttpOnly" in header
        assert "SameSite=Lax" in header
        assert "Secure" in header
        assert "Path=/;" in header or header.endswith("Path=/")
        assert "Domain" not in header
    assert visitor.flow_url != first
    assert state(visitor.get(first)) == "AwaitingSecondFactor"  # the first tab's flow
    assert state(visitor.page()) == "AwaitingSecondFactor"


def test_old_flow_cookies_are_dropped(visitor: Visitor) -> None:
    """Only the newest three flow cookies are kept: each travels with every request."""
    handles = []
    for _ in range(4):
        visitor.begin("entrust", "jsmith")
        handles.append(visitor.flow_url)
        time.sleep(1.05)  # itsdangerous stamps whole seconds
    kept = [url for url in handles if visitor.get(url).status_code == 200]
    assert kept == handles[1:]


def test_secure_can_be_turned_off_for_loopback(engine: Engine) -> None:
    """secure_cookies=False (the plain-HTTP demo) drops only the Secure attribute."""
    visitor = Visitor(make_app(engine, secure_cookies=False).test_client())
    headers = set_cookies(visitor.get(f"{PREFIX}/"), "mfa_fsm_csrf")
    began = visitor.begin("entrust", "jsmith")
    headers += set_cookies(began, flow_cookie(visitor, "mfa_fsm_flow_"))
    assert len(headers) == 2
    assert all("Secure" not in h and "HttpOnly" in h for h in headers)


def test_pages_send_security_headers(visitor: Visitor) -> None:
    """Pages are not cached, framed or given scripts from elsewhere."""
    response = visitor.get(f"{PREFIX}/")
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_missing_secret_key_is_a_clear_error(engine: Engine) -> None:
    """Without app.secret_key the blueprint refuses to run, saying what to set."""
    app = Flask(__name__)
    app.config["TESTING"] = True
    app.register_blueprint(mfa_blueprint(engine, current_user=lambda: None), url_prefix=PREFIX)
    with pytest.raises(RuntimeError, match="secret_key"):
        app.test_client().get(f"{PREFIX}/")


# -- pages and error mapping ---------------------------------------------------------------


def test_entrust_login_page_by_page(visitor: Visitor, entrust_emulator: EntrustEmulator) -> None:
    """Each state has its page; each step redirects (303) to the flow's page. The app's own
    sign-in begins the flow, which confirms EXTERNAL at once and says who checked what."""
    assert visitor.begin("entrust", "jsmith").status_code == 303
    picker = visitor.page()
    assert state(picker) == "AwaitingSecondFactor"
    body = picker.get_data(as_text=True)
    assert "First factor: jsmith, checked by the application." in body
    assert '<input type="hidden" name="delivery" value="SMS">' in body
    assert "Get a code by text message" in body
    assert '<input type="hidden" name="delivery" value="VOICE">' in body
    assert "Get a code by phone call" in body
    visitor.step("factor", factor="OTP", delivery="VOICE")
    code = visitor.page()
    assert heading(code) == "Enter your code"
    assert 'autocomplete="one-time-code"' in code.get_data(as_text=True)
    otp = entrust_emulator.last_otp("jsmith")
    assert otp
    visitor.step("response", response=otp)
    done = visitor.page()
    assert heading(done) == "You are signed in"
    assert "Welcome, John Smith" in done.get_data(as_text=True)


def test_invalid_input_shows_the_same_form_with_the_message(visitor: Visitor) -> None:
    """Malformed input re-renders the form (422) with the problem, marked for screen readers."""
    visitor.begin("entrust", "jsmith")
    visitor.step("factor", factor="TOKEN")
    response = visitor.step("response", response="12;34")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert heading(response) == "Enter your code"
    assert 'role="alert"' in body
    assert "must be 6 to 8 digits" in body  # a TOKEN code (RFC 4226), refused locally
    assert 'aria-invalid="true"' in body
    assert "12;34" not in body


def test_unknown_factor_is_invalid_input(visitor: Visitor) -> None:
    """A factor the IdP did not offer shows the picker again with the problem."""
    visitor.begin("entrust", "jsmith")
    response = visitor.step("factor", factor="NOT_OFFERED")
    assert response.status_code == 422
    assert heading(response) == "Choose a second factor"
    assert "is not offered to this user" in response.get_data(as_text=True)


def test_event_the_state_does_not_take_shows_the_current_page(visitor: Visitor) -> None:
    """A stale form (an event the state does not take) redirects to the current state."""
    visitor.begin("entrust", "jsmith")
    response = visitor.step("poll")
    assert response.status_code == 303
    assert response.headers["Location"] == visitor.flow_url
    assert state(visitor.page()) == "AwaitingSecondFactor"


class StubEngine:
    """An engine whose ``send`` raises a given error (the rest is a real Engine)."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        self.engine = engine
        self.error = error
        self.providers = engine.providers
        self.throttle = None
        self.first_factor_outside = engine.first_factor_outside

    def throttled(self, throttle: object) -> StubEngine:
        return self

    def start(self, provider: str, /, **options: Any) -> FlowView:
        return self.engine.start(provider, **options)

    def send(self, flow_id: str, event: str, /, **data: Any) -> FlowView:
        if event == "submit_first_factor":  # begin() confirms EXTERNAL: let it through
            return self.engine.send(flow_id, event, **data)
        raise self.error

    def view(self, flow_id: str) -> FlowView:
        return self.engine.view(flow_id)

    def delete(self, flow_id: str) -> None:
        self.engine.delete(flow_id)


@pytest.mark.parametrize(
    "error",
    [
        FlowConflict("f", 1, 2),
        FlowBusy("f", 1),
        EventNotAllowed("poll", "AwaitingSecondFactor", ()),
    ],
    ids=["conflict", "busy", "not-allowed"],
)
def test_lost_race_shows_the_current_page(engine: Engine, error: Exception) -> None:
    """A request that lost a race to another one re-renders the flow's current state."""
    visitor = Visitor(make_app(StubEngine(engine, error)).test_client())  # type: ignore[arg-type]
    visitor.begin("entrust", "jsmith")
    response = visitor.step("factor", factor="TOKEN")
    assert response.status_code == 303
    assert state(visitor.page()) == "AwaitingSecondFactor"
    pending = visitor.poll_json()
    assert pending.status_code == 200
    assert pending.get_json()["location"] == visitor.flow_url


def test_unreadable_snapshot_says_start_again(engine: Engine) -> None:
    """A snapshot that no longer parses ends on the start-again page (410)."""
    visitor = Visitor(make_app(StubEngine(engine, SnapshotError("bad"))).test_client())  # type: ignore[arg-type]
    visitor.begin("entrust", "jsmith")
    response = visitor.step("factor", factor="TOKEN")
    assert response.status_code == 410
    assert heading(response) == "Please start again"


def test_no_cookie_or_tampered_cookie_says_start_again(visitor: Visitor, app: Flask) -> None:
    """A flow page without this browser's cookie, or with an altered one, says start again."""
    visitor.begin("entrust", "jsmith")
    stranger = Visitor(app.test_client())
    response = stranger.get(visitor.flow_url)
    assert response.status_code == 410
    assert heading(response) == "Please start again"
    assert 'href="/login/"' in response.get_data(as_text=True)
    name = flow_cookie(visitor)
    cookie = visitor.client.get_cookie(name, path="/")
    assert cookie is not None
    visitor.client.set_cookie(name, cookie.value[:-3] + "xyz", path="/")
    assert visitor.page().status_code == 410


def test_cookie_of_another_flow_does_not_open_this_one(visitor: Visitor, app: Flask) -> None:
    """A flow cookie is bound to its handle: copied under another flow's name it is refused."""
    visitor.begin("entrust", "jsmith")
    cookie = visitor.client.get_cookie(flow_cookie(visitor), path="/")
    assert cookie is not None
    visitor.client.set_cookie("__Host-mfa_fsm_flow_someoneelse", cookie.value, path="/")
    assert visitor.get(f"{PREFIX}/f/someoneElse1").status_code == 410


def test_forgotten_flow_says_start_again_and_drops_the_cookie(
    visitor: Visitor, engine: Engine
) -> None:
    """A flow the store forgot (expired, deleted) shows start again and clears its cookie."""
    visitor.begin("entrust", "jsmith")
    engine.delete(flow_id_of(engine, visitor))
    response = visitor.step("factor", factor="TOKEN")
    assert response.status_code == 410
    (cleared,) = set_cookies(response, flow_cookie(visitor))
    assert "Max-Age=0" in cleared or "Expires=Thu, 01 Jan 1970" in cleared


def test_idp_unavailable_offers_a_retry_and_keeps_the_flow(
    visitor: Visitor, engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """An IdP failure shows "unavailable" (503) with a retry button; the flow is unchanged
    and the retry goes through at once (the refused send counted, throttles count before
    the IdP call, but the send rates leave room for a retry)."""
    visitor.begin("entrust", "jsmith")
    entrust_emulator.faults.inject("status", status=503, path="authenticate/OTP")
    response = visitor.step("factor", factor="OTP", delivery="SMS")
    assert response.status_code == 503
    assert heading(response) == "The identity provider is unavailable"
    body = response.get_data(as_text=True)
    assert '<input type="hidden" name="factor" value="OTP">' in body
    assert '<input type="hidden" name="delivery" value="SMS">' in body
    assert engine.view(flow_id_of(engine, visitor)).state == "AwaitingSecondFactor"
    retry = re.search(r'<form method="post" action="([^"]+)">', body)
    assert retry
    assert retry.group(1) == f"{visitor.flow_url}/factor"
    assert visitor.post(retry.group(1), factor="OTP", delivery="SMS").status_code == 303
    assert heading(visitor.page()) == "Enter your code"


def test_idp_unavailable_after_a_secret_goes_back_to_the_form(
    visitor: Visitor, entrust_emulator: EntrustEmulator
) -> None:
    """When the failed step carried a secret, the page offers the form again, not a resend."""
    visitor.begin("entrust", "jsmith")
    visitor.step("factor", factor="TOKEN")
    entrust_emulator.faults.inject("drop", path="complete")
    response = visitor.step("response", response=DEMO_TOKEN_CODE)
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "Try again</button>" not in body
    assert f'href="{visitor.flow_url}"' in body
    assert DEMO_TOKEN_CODE not in body


def test_network_failure_at_start_goes_back_to_the_form(engine: Engine) -> None:
    """A network failure at the typed start (it carried a password) links back to the form
    and holds neither the password nor a re-send button."""
    visitor = Visitor(make_app(StubStart(engine)).test_client())  # type: ignore[arg-type]
    response = visitor.start("entrust", "pwuser", "Passw0rd!")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "Passw0rd!" not in body
    assert "Try again</button>" not in body
    assert f'href="{PREFIX}/"' in body


def test_network_failure_at_begin_offers_a_retry(engine: Engine) -> None:
    """A network failure when the app begins a flow offers "Try again", which begins it for
    the same signed-in user."""
    visitor = Visitor(make_app(StubStart(engine)).test_client())  # type: ignore[arg-type]
    response = visitor.begin("entrust", "jsmith")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert f'action="{PREFIX}/begin"' in body
    assert '<input type="hidden" name="provider" value="entrust">' in body


class StubStart(StubEngine):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, TransportError("down", path="/"))

    def start(self, provider: str, /, **options: Any) -> FlowView:
        raise self.error


@pytest.mark.parametrize(
    ("provider", "user", "status", "message"),
    [
        ("entrust", "blocked", 401, "The user id or password was not accepted."),
        ("entrust", "bad user!", 401, "The user id or password was not accepted."),
        ("entrust", "otpuser", 401, "The user id or password was not accepted."),
        ("entrust", "jsmith", 401, "The user id or password was not accepted."),
        ("okta", "jsmith", 422, "Choose one of the identity providers"),
    ],
)
def test_start_refusals_show_the_start_page(
    visitor: Visitor, provider: str, user: str, status: int, message: str
) -> None:
    """An IdP refusal, a malformed id, an EXTERNAL-only account or an unknown provider
    re-show the start form, the accounts all with one message."""
    response = visitor.start(provider, user)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert 'id="user"' in response.get_data(as_text=True)


def test_begin_for_a_refused_account_says_so(visitor: Visitor) -> None:
    """An account the IdP refuses (RBA deny) cannot begin: a page says so (403)."""
    response = visitor.begin("entrust", "blocked")
    assert response.status_code == 403
    assert heading(response) == "This account cannot sign in here"


def test_unknown_step_is_404(visitor: Visitor) -> None:
    """Only the five step routes exist."""
    visitor.begin("entrust", "jsmith")
    assert visitor.step("teleport").status_code == 404


# -- polling --------------------------------------------------------------------------------


def poll_when_due(visitor: Visitor, pending: dict[str, Any]) -> Any:
    """Wait until the poll the server asked for is due, as the page's script does, and poll."""
    time.sleep(max(0.0, pending["next_poll_at"] - pending["now"]) + 0.05)
    return visitor.poll_json()


def test_poll_json_follows_a_push(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """The poll route answers the page's script: pending with next_poll_at, then where to go;
    an IdP failure is a 503 with the time to wait."""
    no_retry = EntrustConfig(
        base_url=entrust_emulator.base_url,
        application_id=entrust_emulator.application_id,
        retry=RetryPolicy(attempts=1),
    )
    visitor = Visitor(make_app(Engine(MemoryStore(), [no_retry])).test_client())
    visitor.begin("entrust", "pushmc")
    visitor.step("factor", factor="TOKENPUSH")
    page = visitor.page().get_data(as_text=True)
    assert "data-mfa-next-poll-at=" in page
    assert 'role="status" aria-live="polite"' in page
    pending = visitor.poll_json().get_json()
    assert pending["state"] == "OobPending"
    assert pending["next_poll_at"] > pending["now"] - 5
    assert pending["deadline"] > pending["now"]
    entrust_emulator.approve_push("pushmc")
    entrust_emulator.faults.inject("status", status=503, path="complete")
    unavailable = poll_when_due(visitor, pending)
    assert unavailable.status_code == 503
    assert unavailable.get_json()["retry_after"] >= 1
    done = visitor.poll_json().get_json()
    assert done == {
        "state": "Completed",
        "location": visitor.flow_url,
        "message": "Approved. Signing you in.",
    }


def test_no_script_poll_button_redirects(visitor: Visitor) -> None:
    """Without scripts, the page's "Check now" form POSTs the poll and lands on the page."""
    visitor.begin("entrust", "pushmc")
    visitor.step("factor", factor="TOKENPUSH")
    response = visitor.step("poll")
    assert response.status_code == 303
    assert heading(visitor.page()) == "Approve the sign-in on your device"


# -- CyberArk pages ---------------------------------------------------------------------------


def test_cyberark_push_only_user_starts_the_push(
    visitor: Visitor, cyberark_emulator: CyberArkEmulator
) -> None:
    """A passwordless first challenge offers "Send the request", then the number to match
    (the typed password is not used: the tenant's policy is passwordless for bob)."""
    visitor.start("cyberark", "bob")
    first = visitor.page()
    assert heading(first) == "Sign in with your device"
    assert "Send the request</button>" in first.get_data(as_text=True)
    visitor.step("first-factor")
    pending = visitor.page()
    assert heading(pending) == "Approve the sign-in on your device"
    assert 'id="mfa-number"' in pending.get_data(as_text=True)
    cyberark_emulator.approve("bob")
    assert poll_when_due(visitor, visitor.poll_json().get_json()).get_json()["state"] == "Completed"
    assert heading(visitor.page()) == "You are signed in"


def test_cyberark_try_another_way(visitor: Visitor, cyberark_emulator: CyberArkEmulator) -> None:
    """While an SMS is pending, "Try another way" picks the e-mail instead, sent at once
    (another channel is another request: no resend cooldown, within the send rates)."""
    visitor.start("cyberark", "alice", "alice-password")
    # Each option's button shows CyberArk's own label as its secondary line.
    choices = re.findall(
        r'name="factor" value="([^"]+)">(?:(?!</form>).)*?class="mfa-option-detail">([^<]+)<',
        visitor.page().get_data(as_text=True),
        re.S,
    )
    by_label = {label: factor for factor, label in choices}
    visitor.step("factor", factor=by_label["SMS... XXX-6789"])
    pending = visitor.page().get_data(as_text=True)
    assert "Try another way" in pending
    assert "Or type the code you received" in pending
    assert visitor.step("factor", factor=by_label["Email... @example.com"]).status_code == 303
    code = cyberark_emulator.last_code("alice")
    assert code
    visitor.step("response", response=code)
    assert heading(visitor.page()) == "You are signed in"


def test_security_questions_are_one_field_each(visitor: Visitor) -> None:
    """Several security questions get one labelled field each, sent as answers=[...]."""
    visitor.begin("entrust", "jsmith")
    visitor.step("factor", factor="KBA")
    body = visitor.page().get_data(as_text=True)
    questions = re.findall(r'<label for="answer-(\d)">([^<]+)</label>', body)
    assert len(questions) >= 2
    answers = {f"answer-{n}": DEMO_KBA[q.replace("&#39;", "'")] for n, q in questions}
    visitor.step("response", **answers)
    assert heading(visitor.page()) == "You are signed in"


# -- completion hook, sealed state, secrets -----------------------------------------------------


def test_on_complete_runs_once_and_may_redirect(
    engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """on_complete gets the view with the IdP's token, once per completion; its redirect is
    what the user sees, and it expires the flow's cookie: a repeat of the completing step
    from this browser finds no flow (410, start again) and on_complete is not called again
    (the replay of a lost reply: tests/web/test_frameworks.py)."""
    seen: list[FlowView] = []

    def sign_in(view: FlowView) -> Any:
        seen.append(view)
        return redirect("/home")

    app = make_app(engine, on_complete=sign_in, replay_window=0)
    visitor = Visitor(app.test_client())
    visitor.begin("entrust", "jsmith")
    visitor.step("factor", factor="TOKEN")
    response = visitor.step("response", response=DEMO_TOKEN_CODE)
    assert response.headers["Location"] == "/home"
    assert len(seen) == 1
    assert seen[0].result is not None
    assert seen[0].result.token
    assert visitor.step("response", response=DEMO_TOKEN_CODE).status_code == 410
    assert len(seen) == 1


def test_sealed_engine_keeps_the_flow_in_the_cookie(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """With a SealedEngine (and its replay ledger) the flow's cookie carries the sealed
    token; a whole login works, and an older cookie is refused."""
    sealed = SealedEngine(
        SealedState({"k1": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore())),
        configs(entrust_emulator, cyberark_emulator),
    )
    visitor = Visitor(make_app(sealed).test_client())
    visitor.start("cyberark", "alice", "alice-password")
    assert state(visitor.page()) == "AwaitingSecondFactor"
    name = flow_cookie(visitor)
    cookie = visitor.client.get_cookie(name, path="/")
    assert cookie is not None
    assert len(cookie.value) > 600  # the sealed snapshot itself
    assert len(cookie.value) < 4000  # still fits a browser's cookie
    visitor.step(
        "factor", factor=re.findall(r'name="factor" value="([^"]+)"', visitor.bodies[-1])[0]
    )
    newest = visitor.client.get_cookie(name, path="/")
    assert newest is not None
    assert newest.value != cookie.value
    visitor.client.set_cookie(name, cookie.value, path="/")
    # With the ledger an older token no longer opens: it is out of date (409), and the
    # answer leaves the browser's cookie alone.
    outdated = visitor.page()
    assert outdated.status_code == 409
    assert set_cookies(outdated, name) == []
    visitor.client.set_cookie(name, newest.value, path="/")
    assert visitor.page().status_code == 200


def test_sealed_engine_without_ledger_is_refused_unless_asked(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """Mounting a SealedEngine with no replay ledger is refused, saying what to pass; with
    unsafe_sealed_without_ledger=True an older cookie replays the older state."""
    sealed = SealedEngine(
        SealedState({"k1": SealedState.generate_key()}),
        configs(entrust_emulator, cyberark_emulator),
    )
    with pytest.raises(UsageError, match="unsafe_sealed_without_ledger=True"):
        make_app(sealed)
    visitor = Visitor(make_app(sealed, unsafe_sealed_without_ledger=True).test_client())
    visitor.begin("cyberark", "alice")
    name = flow_cookie(visitor)
    cookie = visitor.client.get_cookie(name, path="/")
    assert cookie is not None
    visitor.step("first-factor", answer="alice-password")
    assert state(visitor.page()) == "AwaitingSecondFactor"
    visitor.client.set_cookie(name, cookie.value, path="/")
    assert state(visitor.page()) == "AwaitingFirstFactor"


def test_no_secret_reaches_a_page_or_a_log(
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    cyberark_emulator: CyberArkEmulator,
) -> None:
    """Passwords, codes, IdP tokens, session ids, cookies and flow ids appear in no page
    (the leak guard checks the log lines of this test)."""
    engine = Engine(MemoryStore(), configs(entrust_emulator, cyberark_emulator), transport=recorder)
    visitor = Visitor(make_app(engine).test_client())
    visitor.start("entrust", "pwuser", "wrong-password")
    visitor.start("entrust", "pwuser", "Passw0rd!")
    visitor.step("factor", factor="OTP", delivery="SMS")
    visitor.page()
    otp = entrust_emulator.last_otp("pwuser")
    assert otp
    visitor.step("response", response="99999999")
    visitor.page()
    visitor.step("response", response=otp)
    assert heading(visitor.page()) == "You are signed in"
    visitor.start("cyberark", "alice", "alice-password")
    picker = visitor.page().get_data(as_text=True)
    sms = re.search(
        r'name="factor" value="([^"]+)">(?:(?!</form>).)*?class="mfa-option-detail">SMS',
        picker,
        re.S,
    )
    assert sms
    visitor.step("factor", factor=sms.group(1))
    visitor.page()
    code = cyberark_emulator.last_code("alice")
    assert code
    visitor.step("response", response=code)
    assert heading(visitor.page()) == "You are signed in"
    recorder.add("wrong-password", "Passw0rd!", "99999999", otp, code)
    store = engine.store
    assert isinstance(store, MemoryStore)
    flow_ids = list(store._records)
    assert len(flow_ids) == 2  # the refused start's flow was discarded
    secrets = recorder.secrets | set(flow_ids)
    pages = "\n".join(visitor.bodies)
    assert [s for s in secrets if s in pages] == []


# -- the application's signed-in user ------------------------------------------------------


def test_start_page_continues_as_the_signed_in_user(visitor: Visitor, engine: Engine) -> None:
    """With current_user() naming someone, the start page offers "Continue as ..."; its
    button begins a flow for that user (the default provider: the one with EXTERNAL)."""
    assert "Continue as" not in visitor.get(f"{PREFIX}/").get_data(as_text=True)
    visitor.begin("entrust", "jsmith")
    page = visitor.get(f"{PREFIX}/").get_data(as_text=True)
    assert "Continue as jsmith" in page
    assert "jsmith — first factor checked by the application" in page
    response = visitor.post(f"{PREFIX}/begin")
    assert response.status_code == 303
    visitor.flow_url = response.headers["Location"]
    assert state(visitor.page()) == "AwaitingSecondFactor"
    visitor.get(f"{PREFIX}/")  # the start page's own CSRF token
    unknown = visitor.post(f"{PREFIX}/begin", provider="okta")
    assert unknown.status_code == 422


def test_begin_without_a_signed_in_user_is_refused(engine: Engine) -> None:
    """begin() for nobody raises VerifiedUserRequired in the application's view."""
    app = make_app(engine)
    bp = app.blueprints["mfa_fsm"]
    assert isinstance(bp, MfaBlueprint)
    with (
        app.test_request_context("/app/signin", method="POST"),
        pytest.raises(VerifiedUserRequired, match=r"current_user\(\), and it returned None"),
    ):
        bp.begin("entrust")


def test_begin_when_the_idp_fails_to_confirm_external_shows_continue(
    visitor: Visitor, entrust_emulator: EntrustEmulator
) -> None:
    """If EXTERNAL cannot be confirmed in begin() (IdP down), the flow's page offers
    "Continue", which confirms it once the IdP is back."""
    entrust_emulator.faults.inject("status", status=503, path="EXTERNAL/complete")
    assert visitor.begin("entrust", "jsmith").status_code == 303
    page = visitor.page()
    assert heading(page) == "Continue to your second factor"
    assert "First factor checked by the application" in page.get_data(as_text=True)
    visitor.step("first-factor")
    assert state(visitor.page()) == "AwaitingSecondFactor"


def test_mount_options_are_checked(engine: Engine) -> None:
    """Limits too small to serve a sign-in are a UsageError at mount; a current_user() of the
    wrong type is a server error page (500), never taken as a user."""
    with pytest.raises(UsageError, match="max_form_bytes"):
        mfa_blueprint(engine, current_user=lambda: None, max_form_bytes=10)
    app = make_app(engine, current_user=lambda: 42)
    response = app.test_client().get(f"{PREFIX}/")
    assert response.status_code == 500
    assert "Continue as" not in response.get_data(as_text=True)
