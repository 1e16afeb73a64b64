"""The CyberArk flow end to end, over real HTTP to the emulator, one fresh context per step.

Every test runs twice (the ``driver`` fixture): over the sync driver (requests) and over the
async one (httpx)."""

from __future__ import annotations

import json

import pytest

from mfa_fsm import CyberArkFlow, IdpError, Snapshot
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.cyberark import UserMechanism
from mfa_fsm.testing.leaks import SecretRecorder
from tests.cyberark.conftest import Login
from tests.support.cyberark import Clock, config_for, pick
from tests.support.stateless import Driver, StatelessClient

START = "/Security/StartAuthentication"
ADVANCE = "/Security/AdvanceAuthentication"


@pytest.fixture
def login(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, clock: Clock, driver: Driver
) -> Login:
    """The conftest's stateless login, started and stepped by the test's driver."""

    def start(user: str = "alice", **overrides: object) -> StatelessClient:
        config = config_for(cyberark_emulator, **overrides)
        flow = driver.start(CyberArkFlow, config=config, user=user, transport=recorder, clock=clock)
        return StatelessClient(flow, driver=driver, config=config, transport=recorder, clock=clock)

    return start


def actions(emulator: CyberArkEmulator) -> list[str]:
    """The Action of every AdvanceAuthentication call so far, in order."""
    return [call.body["Action"] for call in emulator.calls_to(ADVANCE)]


def through_password(client: StatelessClient, password: str) -> None:
    view = client.send("submit_first_factor", answer=password)
    assert view.state == "AwaitingSecondFactor"


# -- password, then a push ---------------------------------------------------------------


def test_password_then_push_approved(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """UP then the Mobile Authenticator push: polled until approved, then Completed with the
    token, the .ASPXAUTH cookie, the user id and name."""
    client = login("alice")
    assert client.view.state == "AwaitingFirstFactor"
    assert client.view.challenge is not None and client.view.challenge.kind == "password"
    through_password(client, "alice-password")
    offered = {choice.label: choice for choice in client.view.choices}
    assert offered["SMS... XXX-6789"].detail == "6789"
    assert offered["Email... @example.com"].detail == "***@example.com"
    view = client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    assert view.state == "OobPending"
    assert view.next_poll_at is not None
    assert client.send("poll").state == "OobPending"
    cyberark_emulator.approve("alice")
    view = client.send("poll")
    assert view.state == "Completed"
    assert view.result is not None
    assert view.result.display_name == "Alice"
    assert cyberark_emulator.token_valid(view.result.token)
    assert cyberark_emulator.token_valid(view.result.cookies[".ASPXAUTH"])
    assert view.result.user_id != "alice"  # CyberArk's user id, not the login name
    assert actions(cyberark_emulator) == ["Answer", "StartOOB", "Poll", "Poll"]


def test_password_then_push_denied(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """A push the user declines ends the flow at the next poll: CyberArk's generic failure
    does not say the user refused (the same answer as a timeout), so Failed(expired) with a
    detail that names both, never a denial it cannot know."""
    client = login("alice")
    through_password(client, "alice-password")
    client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    cyberark_emulator.deny("alice")
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert view.failure_detail is not None and "declined" in view.failure_detail


def test_password_then_push_timed_out(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    """Past the OOB deadline a poll ends Failed(expired) without calling CyberArk."""
    client = login("alice", oob_lifetime=120.0)
    through_password(client, "alice-password")
    view = client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    assert view.deadline == clock.now + 120.0
    clock.advance(119.0)
    assert client.send("poll").state == "OobPending"
    polls = cyberark_emulator.poll_count("alice")
    clock.advance(1.0)
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert cyberark_emulator.poll_count("alice") == polls


def test_push_timed_out_at_cyberark(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """An OOB that CyberArk itself times out fails the package: Failed(expired) (a timeout
    is not a denial), "timed out"."""
    client = login("alice")
    through_password(client, "alice-password")
    client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    real_clock = cyberark_emulator.clock
    cyberark_emulator.clock = lambda: real_clock() + cyberark_emulator.oob_lifetime
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert view.failure_detail is not None and "timed out" in view.failure_detail


# -- codes, questions ---------------------------------------------------------------------


def test_password_then_sms_code_typed_while_polling(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """SMS is started (StartOOB) before the code is asked for, polled, and the typed code
    completes it."""
    client = login("alice")
    through_password(client, "alice-password")
    assert cyberark_emulator.last_code("alice") is None
    view = client.send("select_second_factor", factor=pick(client.view, "SMS"))
    assert view.state == "OobPending"
    assert view.challenge is not None
    assert view.challenge.accepts_code and view.challenge.delivery == "SMS"
    assert "6789" in view.challenge.prompt
    sent = cyberark_emulator.last_code("alice")
    assert sent is not None  # the text went out before the page asks for its code
    assert client.send("poll").state == "OobPending"
    view = client.send("submit_response", answer=sent)
    assert view.state == "Completed"
    assert actions(cyberark_emulator) == ["Answer", "StartOOB", "Poll", "Answer"]


def test_password_then_security_question(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """SQ shows the question, and its answer completes the login."""
    recorder.add("Smokey")
    client = login("alice")
    through_password(client, "alice-password")
    view = client.send("select_second_factor", factor=pick(client.view, "Security Question"))
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None
    assert view.challenge.questions == ("What is your pet's name?",)
    assert client.send("submit_response", answer="Smokey").state == "Completed"


def test_two_security_questions_take_one_answer_each(
    login: Login, recorder: SecretRecorder
) -> None:
    """A second challenge with one Text mechanism is chosen at once; two questions take two
    answers, in order."""
    recorder.add("Beetle")
    client = login("carol")
    view = client.send("submit_first_factor", answer="carol-password")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None
    assert view.challenge.questions == ("First car?", "Favourite colour?")
    assert client.send("submit_response", answers=["Beetle", "Teal"]).state == "Completed"


def test_phone_call_is_polled_only(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """PF (StartOob) is started and polled; its challenge takes no code."""
    client = login("grace")
    through_password(client, "grace-password")
    view = client.send("select_second_factor", factor=pick(client.view, "Phone Call"))
    assert view.challenge is not None and not view.challenge.accepts_code
    assert view.challenge.kind == "call"
    cyberark_emulator.approve("grace")
    assert client.send("poll").state == "Completed"


def test_switch_mechanism_while_one_runs(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """While SMS runs the user may pick e-mail instead; the new code completes it."""
    client = login("alice")
    through_password(client, "alice-password")
    client.send("select_second_factor", factor=pick(client.view, "SMS"))
    view = client.send("select_second_factor", factor=pick(client.view, "Email"))
    assert view.state == "OobPending"
    assert view.challenge is not None and view.challenge.delivery == "EMAIL"
    code = cyberark_emulator.last_code("alice")
    assert client.send("submit_response", answer=code).state == "Completed"


# -- passwordless, pods, new packages, deferred failure -----------------------------------


def test_single_challenge_passwordless_push(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """A package of one push: submit_first_factor() starts it, the number to match is shown,
    and approving with that number completes."""
    client = login("bob")
    assert client.view.state == "AwaitingFirstFactor"
    assert client.view.challenge is not None and client.view.challenge.kind == "push"
    assert not client.view.choices
    assert cyberark_emulator.calls_to(ADVANCE) == []
    view = client.send("submit_first_factor")
    assert view.state == "OobPending"
    assert view.challenge is not None and view.challenge.number_to_match
    cyberark_emulator.approve("bob", number=view.challenge.number_to_match)
    assert client.send("poll").state == "Completed"


@pytest.mark.parametrize("as_url", [True, False], ids=["PodFqdn-url", "PodFqdn-host"])
def test_pod_redirect(login: Login, cyberark_emulator: CyberArkEmulator, as_url: bool) -> None:
    """A PodFqdn reply re-sends StartAuthentication to that pod, and every later call goes
    there; a later single push is started in the same step as the password."""
    cyberark_emulator.pod_fqdn_as_url = as_url
    client = login("frank")
    view = client.send("submit_first_factor", answer="frank-password")
    assert view.state == "OobPending"  # second challenge: one mechanism, started at once
    cyberark_emulator.approve("frank")
    assert client.send("poll").state == "Completed"
    paths = [call.path for call in cyberark_emulator.calls]
    assert paths[0] == START
    assert paths[1:] == ["/pod2" + START] + ["/pod2" + ADVANCE] * 3
    flow = client.restore()
    assert flow.snapshot().context.base_url == cyberark_emulator.base_url + "/pod2"


def test_redirect_loop_refused(cyberark_emulator: CyberArkEmulator, recorder, driver) -> None:
    """A pod that redirects to itself, or to a pod already asked, is refused; so is a chain
    longer than max_redirects."""
    config = config_for(cyberark_emulator)
    own = f"http://{cyberark_emulator.host}:{cyberark_emulator.port}"
    cyberark_emulator.redirect_user("alice", own + "/pod3", loop=True)
    with pytest.raises(IdpError, match="loop"):
        driver.start(CyberArkFlow, config=config, user="alice", transport=recorder)
    assert len(cyberark_emulator.calls_to(START)) == 2

    cyberark_emulator.clear_calls()
    cyberark_emulator.redirect_user("alice", cyberark_emulator.base_url, loop=True)
    with pytest.raises(IdpError, match="loop"):
        driver.start(CyberArkFlow, config=config, user="alice", transport=recorder)
    assert len(cyberark_emulator.calls_to(START)) == 1

    capped = config_for(cyberark_emulator, max_redirects=0)
    with pytest.raises(IdpError, match="more than 0 times"):
        driver.start(CyberArkFlow, config=capped, user="frank", transport=recorder)


def test_new_package_in_the_middle(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """NewPackage replaces the package and starts over at its first challenge."""
    client = login("erin")
    view = client.send("submit_first_factor", answer="erin-password")
    assert view.state == "AwaitingFirstFactor"
    assert [choice.kind for choice in view.choices] == ["otp", "otp"]
    assert view.challenge is None
    view = client.send("select_second_factor", factor=pick(view, "Email"))
    assert view.state == "OobPending"
    code = cyberark_emulator.last_code("erin")
    assert client.send("submit_response", answer=code).state == "Completed"


def test_new_package_while_polling(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """A NewPackage answered to a poll also starts the flow over at the new first challenge."""
    cyberark_emulator.add_user(
        "ivy",
        password="ivy-password",
        challenges=[["UP"], ["OTP"]],
        new_package=[["UP"]],
        new_package_after=2,
    )
    client = login("ivy")
    assert client.send("submit_first_factor", answer="ivy-password").state == "OobPending"
    cyberark_emulator.approve("ivy")
    view = client.send("poll")
    assert view.state == "AwaitingFirstFactor"
    assert view.challenge is not None and view.challenge.kind == "password"
    assert client.send("submit_first_factor", answer="ivy-password").state == "Completed"


def test_wrong_password_reported_after_second_challenge(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """With deferred failures a wrong password moves on to the second challenge, and the
    failure surfaces only when that is answered: Failed(rejected)."""
    recorder.add("not-dave-password")
    client = login("dave")
    through_password(client, "not-dave-password")
    view = client.send("select_second_factor", factor=pick(client.view, "Email"))
    assert view.state == "OobPending"
    view = client.send("submit_response", answer=cyberark_emulator.last_code("dave"))
    assert (view.state, view.failure) == ("Failed", "rejected")
    assert view.failure_detail is not None and "earlier challenge" in view.failure_detail
    assert cyberark_emulator.last_failure("dave") == "wrong answer to UP"


def test_wrong_password_fails_at_once(login: Login, recorder: SecretRecorder) -> None:
    """Without deferral a wrong password kills the package at once: Failed(rejected)."""
    recorder.add("wrong-password")
    client = login("alice")
    view = client.send("submit_first_factor", answer="wrong-password")
    assert (view.state, view.failure) == ("Failed", "rejected")


def test_cancel(login: Login) -> None:
    """Cancel ends Failed(cancelled) and the flow takes no further event."""
    client = login("alice")
    view = client.send("cancel")
    assert (view.state, view.failure) == ("Failed", "cancelled")
    assert client.restore().allowed_events() == ()


# -- each step in a fresh process-like context ---------------------------------------------


def test_every_step_in_a_fresh_context(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, clock: Clock, driver: Driver
) -> None:
    """Each step starts from JSON text alone, with a new transport and a new flow object; the
    snapshot round-trips exactly and holds what the next request needs."""
    config = config_for(cyberark_emulator)

    def step(saved: str, event: str, **data: object) -> str:
        transport = driver.recorder()  # new connections, as in a new process
        flow = CyberArkFlow.restore(saved, config=config, transport=transport, clock=clock)
        driver.send(flow, event, **data)
        recorder.secrets |= transport.secrets
        text = flow.snapshot().to_json()
        assert Snapshot.from_json(text) == flow.snapshot()
        return text

    flow = driver.start(CyberArkFlow, config=config, user="frank", transport=recorder, clock=clock)
    saved = flow.snapshot().to_json()
    context = json.loads(saved)["context"]
    assert context["base_url"].endswith("/pod2")
    assert context["session_id"] and context["tenant_id"] == "ABC1234"
    assert len(context["package"]) == 2
    saved = step(saved, "submit_first_factor", answer="frank-password")
    context = json.loads(saved)["context"]
    assert context["index"] == 1 and context["answer_type"] == "StartTextOob"
    assert context["oob_started_at"] == clock.now
    saved = step(saved, "poll")
    cyberark_emulator.approve("frank")
    saved = step(saved, "poll")
    done = Snapshot.from_json(saved)
    assert done.state == "Completed"
    assert done.result is not None and ".ASPXAUTH" in done.result.cookies
    assert done.context.session_id is None and done.context.cookies == {}


def test_unknown_summary_fails_the_flow(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """A Summary the flow does not know ends Failed(idp_error), never a guess."""
    client = login("alice")
    cyberark_emulator.faults.inject("unknown_enum", path=ADVANCE)
    view = client.send("submit_first_factor", answer="alice-password")
    assert (view.state, view.failure) == ("Failed", "idp_error")
    assert view.failure_detail is not None and "unknown Summary" in view.failure_detail


def test_qr_image_is_shown_while_qr_runs(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """The QR mechanism's image is available while it runs; scanning completes it."""
    cyberark_emulator.add_user(
        "quinn", password="quinn-password", challenges=[["UP"], [UserMechanism("QR"), "PF"]]
    )
    client = login("quinn")
    through_password(client, "quinn-password")
    client.send("select_second_factor", factor=pick(client.view, "QR"))
    image = client.restore().qr_image  # type: ignore[attr-defined]
    assert image is not None and image.startswith("data:image/png;base64,")
    cyberark_emulator.approve("quinn")
    assert client.send("poll").state == "Completed"


def test_a_cookie_the_idp_deletes_is_no_longer_sent(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """CyberArk deletes its ``sessdata`` cookie (``Max-Age=0``, RFC 6265 section 3.1): the
    flow drops its copy, so the next call sends no ``sessdata``; the next reply's fresh one is
    sent again after that. Over real HTTP, through requests' standard cookie jar."""
    client = login("alice")
    first = cyberark_emulator.calls[-1]
    assert first.path.endswith("/Security/StartAuthentication")
    cyberark_emulator.delete_session_cookie()
    view = client.send("submit_first_factor", answer="alice-password")
    assert "sessdata=" in (cyberark_emulator.calls[-1].headers.get("cookie") or "")
    client.send("select_second_factor", factor=pick(view, "Mobile Authenticator"))
    after_delete = cyberark_emulator.calls[-1].headers.get("cookie") or ""
    assert "sessdata=" not in after_delete
    client.send("poll")
    assert "sessdata=" in (cyberark_emulator.calls[-1].headers.get("cookie") or "")
