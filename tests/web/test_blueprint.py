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
    TransportError,
)
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator, SecretRecorder
from mfa_fsm.testing.entrust import DEMO_KBA, DEMO_TOKEN_CODE
from mfa_fsm.web import mfa_blueprint
from tests.web.support import PREFIX, Visitor, heading, make_app, set_cookies, state


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
        response = visitor.post(f"{PREFIX}/", provider="entrust", user="jsmith", csrf_token=token)
        assert response.status_code == 400
        assert heading(response) == "The form has expired"
        assert "sent from another site" in response.get_data(as_text=True)
    assert entrust_emulator.calls_to("/authentication/users") == []


def test_step_without_csrf_token_changes_nothing(visitor: Visitor, engine: Engine) -> None:
    """A step POST with a wrong token is refused with 400; the flow is as it was."""
    visitor.start("entrust", "jsmith")
    flow_id = flow_id_of(engine, visitor)
    response = visitor.step("first-factor", csrf_token="forged")
    assert response.status_code == 400
    assert engine.view(flow_id).state == "AwaitingFirstFactor"
    assert engine.view(flow_id).version == 0


def test_csrf_cookie_from_another_app_is_refused(engine: Engine) -> None:
    """The CSRF cookie is signed: one signed with another key does not count."""
    first, second = make_app(engine), make_app(engine)
    second.secret_key = "another-secret-key-0123456789-0123456789"
    visitor = Visitor(first.test_client())
    visitor.get(f"{PREFIX}/")
    stranger = Visitor(second.test_client())
    stranger.client.set_cookie(
        "mfa_fsm_csrf", visitor.client.get_cookie("mfa_fsm_csrf", path="/login/").value
    )
    response = stranger.post(
        f"{PREFIX}/", provider="entrust", user="jsmith", csrf_token=visitor.csrf
    )
    assert response.status_code == 400


def test_poll_json_without_csrf_header_is_refused(visitor: Visitor) -> None:
    """The polling script's POST needs the X-CSRF-Token header too (JSON 400 otherwise)."""
    visitor.start("entrust", "pushmc")
    visitor.step("first-factor")
    visitor.step("factor", factor="TOKENPUSH")
    response = visitor.poll_json(csrf="forged")
    assert response.status_code == 400
    assert response.is_json
    assert response.get_json()["location"] == visitor.flow_url


# -- cookies ----------------------------------------------------------------------------


def test_cookie_attributes(visitor: Visitor) -> None:
    """Both cookies are HttpOnly, SameSite=Lax and Secure; the flow cookie is scoped to its
    flow's URL, so two tabs keep two flows."""
    csrf = set_cookies(visitor.get(f"{PREFIX}/"), "mfa_fsm_csrf")
    flow = set_cookies(visitor.start("entrust", "jsmith"), "mfa_fsm_flow")
    assert len(csrf) == 1
    assert len(flow) == 1
    for header in (csrf[0], flow[0]):
        assert "HttpOnly" in header
        assert "SameSite=Lax" in header
        assert "Secure" in header
    assert "Path=/login/;" in csrf[0] or csrf[0].endswith("Path=/login/")
    assert f"Path={visitor.flow_url};" in flow[0]


def test_secure_can_be_turned_off_for_loopback(engine: Engine) -> None:
    """secure_cookies=False (the plain-HTTP demo) drops only the Secure attribute."""
    visitor = Visitor(make_app(engine, secure_cookies=False).test_client())
    headers = set_cookies(visitor.get(f"{PREFIX}/"), "mfa_fsm_csrf") + set_cookies(
        visitor.start("entrust", "jsmith"), "mfa_fsm_flow"
    )
    assert headers
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
    app.register_blueprint(mfa_blueprint(engine), url_prefix=PREFIX)
    with pytest.raises(RuntimeError, match="secret_key"):
        app.test_client().get(f"{PREFIX}/")


# -- pages and error mapping ---------------------------------------------------------------


def test_entrust_login_page_by_page(visitor: Visitor, entrust_emulator: EntrustEmulator) -> None:
    """Each state has its page; each step redirects (303) to the flow's page."""
    assert visitor.start("entrust", "jsmith").status_code == 303
    assert state(visitor.page()) == "AwaitingFirstFactor"
    assert visitor.step("first-factor").status_code == 303
    picker = visitor.page()
    assert state(picker) == "AwaitingSecondFactor"
    body = picker.get_data(as_text=True)
    assert 'value="SMS">Send a code by text message (SMS)</button>' in body
    assert "Send a code by voice call" in body
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
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
    visitor.step("factor", factor="TOKEN")
    response = visitor.step("response", response="12;34")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert heading(response) == "Enter your code"
    assert 'role="alert"' in body
    assert "must contain only letters, digits and" in body
    assert 'aria-invalid="true"' in body
    assert "12;34" not in body


def test_unknown_factor_is_invalid_input(visitor: Visitor) -> None:
    """A factor the IdP did not offer shows the picker again with the problem."""
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
    response = visitor.step("factor", factor="NOT_OFFERED")
    assert response.status_code == 422
    assert heading(response) == "Choose a second factor"
    assert "is not offered to this user" in response.get_data(as_text=True)


def test_event_the_state_does_not_take_shows_the_current_page(visitor: Visitor) -> None:
    """A stale form (an event the state does not take) redirects to the current state."""
    visitor.start("entrust", "jsmith")
    response = visitor.step("poll")
    assert response.status_code == 303
    assert response.headers["Location"] == visitor.flow_url
    assert state(visitor.page()) == "AwaitingFirstFactor"


class StubEngine:
    """An engine whose ``send`` raises a given error (the rest is a real Engine)."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        self.engine = engine
        self.error = error
        self.providers = engine.providers

    def start(self, provider: str, /, **options: Any) -> FlowView:
        return self.engine.start(provider, **options)

    def send(self, flow_id: str, event: str, /, **data: Any) -> FlowView:
        raise self.error

    def view(self, flow_id: str) -> FlowView:
        return self.engine.view(flow_id)


@pytest.mark.parametrize(
    "error",
    [FlowConflict("f", 0, 1), FlowBusy("f", 0), EventNotAllowed("poll", "AwaitingFirstFactor", ())],
    ids=["conflict", "busy", "not-allowed"],
)
def test_lost_race_shows_the_current_page(engine: Engine, error: Exception) -> None:
    """A request that lost a race to another one re-renders the flow's current state."""
    visitor = Visitor(make_app(StubEngine(engine, error)).test_client())  # type: ignore[arg-type]
    visitor.start("entrust", "jsmith")
    response = visitor.step("first-factor")
    assert response.status_code == 303
    assert state(visitor.page()) == "AwaitingFirstFactor"
    pending = visitor.poll_json()
    assert pending.status_code == 200
    assert pending.get_json()["location"] == visitor.flow_url


def test_unreadable_snapshot_says_start_again(engine: Engine) -> None:
    """A snapshot that no longer parses ends on the start-again page (410)."""
    visitor = Visitor(make_app(StubEngine(engine, SnapshotError("bad"))).test_client())  # type: ignore[arg-type]
    visitor.start("entrust", "jsmith")
    response = visitor.step("first-factor")
    assert response.status_code == 410
    assert heading(response) == "Please start again"


def test_no_cookie_or_tampered_cookie_says_start_again(visitor: Visitor, app: Flask) -> None:
    """A flow page without this browser's cookie, or with an altered one, says start again."""
    visitor.start("entrust", "jsmith")
    stranger = Visitor(app.test_client())
    response = stranger.get(visitor.flow_url)
    assert response.status_code == 410
    assert heading(response) == "Please start again"
    assert 'href="/login/"' in response.get_data(as_text=True)
    cookie = visitor.client.get_cookie("mfa_fsm_flow", path=visitor.flow_url)
    assert cookie is not None
    visitor.client.set_cookie("mfa_fsm_flow", cookie.value[:-3] + "xyz", path=visitor.flow_url)
    assert visitor.page().status_code == 410


def test_cookie_of_another_flow_does_not_open_this_one(visitor: Visitor, app: Flask) -> None:
    """A flow cookie is bound to its handle: copied under another flow's URL it is refused."""
    visitor.start("entrust", "jsmith")
    cookie = visitor.client.get_cookie("mfa_fsm_flow", path=visitor.flow_url)
    assert cookie is not None
    other = f"{PREFIX}/f/someoneelse"
    visitor.client.set_cookie("mfa_fsm_flow", cookie.value, path=other)
    assert visitor.get(other).status_code == 410


def test_forgotten_flow_says_start_again_and_drops_the_cookie(
    visitor: Visitor, engine: Engine
) -> None:
    """A flow the store forgot (expired, deleted) shows start again and clears its cookie."""
    visitor.start("entrust", "jsmith")
    engine.delete(flow_id_of(engine, visitor))
    response = visitor.step("first-factor")
    assert response.status_code == 410
    (cleared,) = set_cookies(response, "mfa_fsm_flow")
    assert "Max-Age=0" in cleared or "Expires=Thu, 01 Jan 1970" in cleared


def test_idp_unavailable_offers_a_retry_and_keeps_the_flow(
    visitor: Visitor, engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """An IdP failure shows "unavailable" (503) with a retry button; the flow is unchanged
    and the retry goes through."""
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
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
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
    visitor.step("factor", factor="TOKEN")
    entrust_emulator.faults.inject("drop", path="complete")
    response = visitor.step("response", response=DEMO_TOKEN_CODE)
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "Try again</button>" not in body
    assert f'href="{visitor.flow_url}"' in body
    assert DEMO_TOKEN_CODE not in body


def test_network_failure_at_start_offers_a_retry(engine: Engine) -> None:
    """A network failure at the start keeps the provider and user id for the retry."""
    visitor = Visitor(make_app(StubStart(engine)).test_client())  # type: ignore[arg-type]
    visitor.get(f"{PREFIX}/")
    response = visitor.post(f"{PREFIX}/", provider="entrust", user="jsmith")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert 'name="user" value="jsmith"' in body
    assert f'action="{PREFIX}/"' in body


class StubStart(StubEngine):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, TransportError("down", path="/"))

    def start(self, provider: str, /, **options: Any) -> FlowView:
        raise self.error


@pytest.mark.parametrize(
    ("provider", "user", "message"),
    [
        ("entrust", "blocked", "did not accept this user id"),
        ("entrust", "bad user!", "User id: may contain only"),
        ("entrust", "otpuser", "cannot sign in here"),
        ("okta", "jsmith", "Choose one of the identity providers"),
    ],
)
def test_start_refusals_show_the_start_page(
    visitor: Visitor, provider: str, user: str, message: str
) -> None:
    """An IdP refusal, a malformed user id or an unknown provider re-show the start form."""
    response = visitor.start(provider, user)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert 'id="user"' in response.get_data(as_text=True)


def test_unknown_step_is_404(visitor: Visitor) -> None:
    """Only the five step routes exist."""
    visitor.start("entrust", "jsmith")
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
    visitor.start("entrust", "pushmc")
    visitor.step("first-factor")
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
    visitor.start("entrust", "pushmc")
    visitor.step("first-factor")
    visitor.step("factor", factor="TOKENPUSH")
    response = visitor.step("poll")
    assert response.status_code == 303
    assert heading(visitor.page()) == "Approve the sign-in on your device"


# -- CyberArk pages ---------------------------------------------------------------------------


def test_cyberark_push_only_user_starts_the_push(
    visitor: Visitor, cyberark_emulator: CyberArkEmulator
) -> None:
    """A passwordless first challenge offers "Send the request", then the number to match."""
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
    """While an SMS is pending, "Try another way" picks the e-mail instead."""
    visitor.start("cyberark", "alice")
    visitor.step("first-factor", answer="alice-password")
    choices = re.findall(
        r'name="factor" value="([^"]+)">\s*<button type="submit">([^<]+)</button>',
        visitor.page().get_data(as_text=True),
    )
    by_label = {label: factor for factor, label in choices}
    visitor.step("factor", factor=by_label["SMS... XXX-6789"])
    pending = visitor.page().get_data(as_text=True)
    assert "Try another way" in pending
    assert "Or type the code you received" in pending
    visitor.step("factor", factor=by_label["Email... @example.com"])
    code = cyberark_emulator.last_code("alice")
    assert code
    visitor.step("response", response=code)
    assert heading(visitor.page()) == "You are signed in"


def test_security_questions_are_one_field_each(visitor: Visitor) -> None:
    """Several security questions get one labelled field each, sent as answers=[...]."""
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
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
    """on_complete gets the view with the IdP's token, once; its redirect is what the user sees."""
    seen: list[FlowView] = []

    def sign_in(view: FlowView) -> Any:
        seen.append(view)
        return redirect("/home")

    visitor = Visitor(make_app(engine, on_complete=sign_in).test_client())
    visitor.start("entrust", "jsmith")
    visitor.step("first-factor")
    visitor.step("factor", factor="TOKEN")
    response = visitor.step("response", response=DEMO_TOKEN_CODE)
    assert response.headers["Location"] == "/home"
    assert len(seen) == 1
    assert seen[0].result is not None
    assert seen[0].result.token
    assert visitor.step("response", response=DEMO_TOKEN_CODE).status_code == 303
    assert len(seen) == 1


def test_sealed_engine_keeps_the_flow_in_the_cookie(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """With a SealedEngine the flow's cookie carries the sealed token; a whole login works."""
    sealed = SealedEngine(
        SealedState({"k1": SealedState.generate_key()}),
        configs(entrust_emulator, cyberark_emulator),
    )
    visitor = Visitor(make_app(sealed).test_client())
    first = visitor.start("cyberark", "alice")
    (cookie,) = set_cookies(first, "mfa_fsm_flow")
    assert len(cookie) > 600  # the sealed snapshot itself, not just the ids
    assert len(cookie) < 4000  # still fits a browser's cookie
    visitor.step("first-factor", answer="alice-password")
    assert state(visitor.page()) == "AwaitingSecondFactor"
    visitor.client.set_cookie(
        "mfa_fsm_flow", cookie.split(";")[0].split("=", 1)[1], path=visitor.flow_url
    )
    # Without a replay ledger an older token still opens: the flow is where that token was.
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
    visitor.start("entrust", "pwuser")
    visitor.step("first-factor", answer="wrong-password")
    visitor.step("first-factor", answer="Passw0rd!")
    visitor.step("factor", factor="OTP", delivery="SMS")
    visitor.page()
    otp = entrust_emulator.last_otp("pwuser")
    assert otp
    visitor.step("response", response="99999999")
    visitor.page()
    visitor.step("response", response=otp)
    assert heading(visitor.page()) == "You are signed in"
    visitor.start("cyberark", "alice")
    visitor.step("first-factor", answer="alice-password")
    picker = visitor.page().get_data(as_text=True)
    sms = re.search(r'name="factor" value="([^"]+)">\s*<button type="submit">SMS', picker)
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
    assert len(flow_ids) == 2
    secrets = recorder.secrets | set(flow_ids)
    pages = "\n".join(visitor.bodies)
    assert [s for s in secrets if s in pages] == []
