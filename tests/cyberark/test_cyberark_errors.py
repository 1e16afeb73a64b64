"""Bad input and faults: each is a typed error, the flow is unchanged, and no message holds a
secret. "Unchanged" means the snapshot's JSON is identical before and after the event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mfa_fsm import (
    CyberArkFlow,
    EventNotAllowed,
    IdpError,
    IdpReplyError,
    InvalidInput,
    MfaError,
    TransportError,
    UsageError,
)
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks
from tests.cyberark.conftest import Login
from tests.support.cyberark import config_for, pick
from tests.support.stateless import StatelessClient

ADVANCE = "/Security/AdvanceAuthentication"


@contextmanager
def unchanged(
    client: StatelessClient, recorder: SecretRecorder, expected: type[MfaError]
) -> Iterator[pytest.ExceptionInfo[MfaError]]:
    """The block must raise ``expected``, leave the saved snapshot as it was, and hold none of
    the secrets seen so far in the error's message (or its cause's)."""
    before = client.saved
    with pytest.raises(expected) as caught:
        yield caught
    assert client.saved == before
    texts = [str(caught.value), repr(caught.value), str(caught.value.__cause__ or "")]
    assert find_leaks(texts, recorder.secrets) == []


def at_push(login: Login, user: str = "alice") -> StatelessClient:
    client = login(user)
    client.send("submit_first_factor", answer=f"{user}-password")
    client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    assert client.view.state == "OobPending"
    return client


# -- the caller's mistakes: refused before any call ------------------------------------


def test_event_the_state_does_not_take(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """poll in AwaitingFirstFactor, or submit_response before a challenge, is EventNotAllowed."""
    client = login("alice")
    calls = len(cyberark_emulator.calls)
    for event, data in (("poll", {}), ("submit_response", {"answer": "123456"})):
        with unchanged(client, recorder, EventNotAllowed):
            client.send(event, **data)
    assert len(cyberark_emulator.calls) == calls


def test_unknown_mechanism_id(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """A factor that is not one of the offered mechanism ids is InvalidInput."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    calls = len(cyberark_emulator.calls)
    with unchanged(client, recorder, InvalidInput) as caught:
        client.send("select_second_factor", factor="not-a-mechanism-id")
    assert caught.value.field == "factor"
    assert "not-a-mechanism-id" not in str(caught.value)
    assert len(cyberark_emulator.calls) == calls


def test_unsupported_mechanism_cannot_be_picked(login: Login, recorder: SecretRecorder) -> None:
    """A FIDO2 key (U2F) is shown but not offered: picking it is InvalidInput."""
    client = login("grace")
    client.send("submit_first_factor", answer="grace-password")
    key = next(choice for choice in client.view.choices if choice.kind == "security_key")
    assert not key.supported
    with unchanged(client, recorder, InvalidInput):
        client.send("select_second_factor", factor=key.id)


def test_code_for_a_mechanism_that_takes_none(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """A code typed for a phone call, or an answer for a passwordless push, is InvalidInput."""
    client = login("grace")
    client.send("submit_first_factor", answer="grace-password")
    client.send("select_second_factor", factor=pick(client.view, "Phone Call"))
    with unchanged(client, recorder, InvalidInput) as caught:
        client.send("submit_response", answer="123456")
    assert caught.value.field == "answer"

    client = login("bob")
    calls = len(cyberark_emulator.calls)
    with unchanged(client, recorder, InvalidInput):
        client.send("submit_first_factor", answer="123456")
    assert len(cyberark_emulator.calls) == calls


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"answer": ""}, "answer"),
        ({"answer": 12345}, "answer"),
        ({"answer": "x" * 300}, "answer"),
        ({}, "answer"),
        ({"answers": ["a"]}, "answers"),
        ({"answer": "a", "extra": 1}, "extra"),
    ],
)
def test_malformed_answers(
    login: Login, recorder: SecretRecorder, data: dict[str, Any], field: str
) -> None:
    """Empty, non-string, oversize or misplaced answers are InvalidInput naming the field."""
    client = login("alice")
    with unchanged(client, recorder, InvalidInput) as caught:
        client.send("submit_first_factor", **data)
    assert caught.value.field == field


def test_malformed_code_and_wrong_number_of_answers(login: Login, recorder: SecretRecorder) -> None:
    """A code with symbols, and one answer for two questions, are InvalidInput."""
    client = at_push(login)
    with unchanged(client, recorder, InvalidInput):
        client.send("submit_response", answer="12;34")
    client = login("carol")
    client.send("submit_first_factor", answer="carol-password")
    with unchanged(client, recorder, InvalidInput):
        client.send("submit_response", answers=["Beetle"])
    with unchanged(client, recorder, InvalidInput):
        client.send("submit_response", answer="Beetle")


def test_first_factor_before_choosing(login: Login, cyberark_emulator, recorder) -> None:
    """When the first challenge offers several mechanisms, answering before picking one is a
    UsageError that says to pick first."""
    cyberark_emulator.add_user("jo", password="jo-password", challenges=[["UP", "PF"]])
    client = login("jo")
    assert len(client.view.choices) == 2
    with unchanged(client, recorder, UsageError) as caught:
        client.send("submit_first_factor", answer="jo-password")
    assert "select_second_factor" in str(caught.value)
    client.send("select_second_factor", factor=pick(client.view, "Password"))
    assert client.view.state == "AwaitingFirstFactor"
    assert client.send("submit_first_factor", answer="jo-password").state == "Completed"


def test_poll_after_completion(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """Once Completed, a poll is EventNotAllowed and calls nothing."""
    client = at_push(login)
    cyberark_emulator.approve("alice")
    assert client.send("poll").state == "Completed"
    calls = len(cyberark_emulator.calls)
    with unchanged(client, recorder, EventNotAllowed):
        client.send("poll")
    assert len(cyberark_emulator.calls) == calls


def test_poll_before_next_poll_at_calls_nothing(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """A poll before next_poll_at answers from the snapshot: same version, no call."""
    client = login("alice", poll_interval=5.0)
    client.send("submit_first_factor", answer="alice-password")
    view = client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
    calls = len(cyberark_emulator.calls)
    assert client.send("poll").version == view.version
    assert len(cyberark_emulator.calls) == calls


# -- the IdP's and the network's faults: typed errors, retry works -----------------------


@pytest.mark.parametrize("kind", ["html", "empty", "wrong_shape"])
def test_malformed_or_html_reply(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, kind: str
) -> None:
    """An HTML, empty or shapeless reply is IdpReplyError; the same event then succeeds."""
    client = login("alice")
    cyberark_emulator.faults.inject(kind, path=ADVANCE)
    with unchanged(client, recorder, IdpReplyError):
        client.send("submit_first_factor", answer="alice-password")
    assert client.send("submit_first_factor", answer="alice-password").state == (
        "AwaitingSecondFactor"
    )


def test_wrongly_typed_fields_are_refused(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """success that is not a boolean, or a Result that is not an object, is IdpReplyError."""
    client = login("alice")
    for body in ({"success": "yes", "Result": {}}, {"success": True, "Result": ["x"]}):
        cyberark_emulator.faults.inject("wrong_shape", path=ADVANCE, body=body)
        with unchanged(client, recorder, IdpReplyError):
            client.send("submit_first_factor", answer="alice-password")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_5xx(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, status: int
) -> None:
    """HTTP 5xx is a transient IdpError carrying the status; the retry succeeds."""
    client = login("alice")
    cyberark_emulator.faults.inject("status", status=status, path=ADVANCE)
    with unchanged(client, recorder, IdpError) as caught:
        client.send("submit_first_factor", answer="alice-password")
    assert caught.value.status == status and caught.value.transient
    assert client.send("submit_first_factor", answer="alice-password").state == (
        "AwaitingSecondFactor"
    )


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_dropped_connection(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, kind: str
) -> None:
    """A connection dropped before or during the reply is TransportError; the retry works."""
    client = login("alice")
    cyberark_emulator.faults.inject(kind, path=ADVANCE)
    with unchanged(client, recorder, TransportError):
        client.send("submit_first_factor", answer="alice-password")
    assert client.send("submit_first_factor", answer="alice-password").state == (
        "AwaitingSecondFactor"
    )


def test_poll_faults_carry_a_back_off(
    login: Login, cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, clock
) -> None:
    """A failed poll says when to try again: Retry-After when given, else a wait that grows
    with the outage; the flow is unchanged and the next poll still works."""
    client = at_push(login)  # the IdP last answered at clock.now
    cyberark_emulator.faults.inject("rate_limit", retry_after=7, path=ADVANCE)
    with unchanged(client, recorder, IdpError) as limited:
        client.send("poll")
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)

    clock.advance(4.0)
    cyberark_emulator.faults.inject("status", status=503, path=ADVANCE)
    with unchanged(client, recorder, IdpError) as unavailable:
        client.send("poll")
    assert unavailable.value.retry_after == 4.0

    clock.advance(8.0)
    cyberark_emulator.faults.inject("drop", path=ADVANCE)
    with unchanged(client, recorder, TransportError) as dropped:
        client.send("poll")
    assert dropped.value.retry_after == 12.0

    assert client.send("poll").state == "OobPending"


def test_transient_poll_fault_is_retried_within_the_step(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """With the default retry policy, a poll hit by one 503 is retried in the same step."""
    config = config_for(
        cyberark_emulator, retry=RetryPolicy(attempts=3, first_delay=0.0, max_delay=0.0)
    )
    flow = CyberArkFlow.start(config=config, user="bob", transport=recorder)
    flow.send("submit_first_factor")
    assert flow.state == "OobPending"
    polls = cyberark_emulator.poll_count("bob")
    cyberark_emulator.faults.inject("status", status=503, path=ADVANCE)
    assert flow.send("poll").state == "OobPending"
    assert cyberark_emulator.poll_count("bob") == polls + 1


def test_faults_at_start_create_no_flow(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """StartAuthentication faults raise from start(); an unknown tenant is an IdpError."""
    config = config_for(cyberark_emulator)
    cyberark_emulator.faults.inject("status", status=503)
    with pytest.raises(IdpError):
        CyberArkFlow.start(config=config, user="alice", transport=recorder)
    cyberark_emulator.faults.inject("html")
    with pytest.raises(IdpReplyError):
        CyberArkFlow.start(config=config, user="alice", transport=recorder)
    with pytest.raises(IdpError, match="refused to start"):
        CyberArkFlow.start(
            config=config_for(cyberark_emulator, tenant_id="OTHER"),
            user="alice",
            transport=recorder,
        )
    with pytest.raises(InvalidInput):
        CyberArkFlow.start(config=config, user="alice smith", transport=recorder)


def test_reprs_hold_no_secrets(login: Login, recorder: SecretRecorder) -> None:
    """Neither the flow's snapshot nor its view shows a session id, cookie or token in a repr."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    flow = client.restore()
    texts = [repr(flow.snapshot()), repr(flow.snapshot().context), repr(flow.view())]
    assert recorder.secrets
    assert find_leaks(texts, recorder.secrets) == []
