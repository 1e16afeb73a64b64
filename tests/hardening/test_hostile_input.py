"""Hostile input in every field a web request can carry into either flow.

Each field is tried with oversize, non-ASCII, control characters (NUL, CR/LF, escape),
SQL / JSON / HTML / path injection strings and values of the wrong type. Two rules:

* Codes, mechanism and factor ids, deliveries, user and flow ids take a narrow alphabet, so
  every hostile value is refused with ``InvalidInput`` naming the field, before any IdP call,
  with the flow unchanged and the value nowhere in the message.
* Passwords and answers are free text: a password may well hold ``<``, ``'`` or ``ü``. There
  the wrong types, control characters, empty and oversize values are refused as above; any
  other text is sent to the IdP exactly as typed, inside a JSON string (so nothing is
  injected), and the IdP's verdict moves the flow to a defined outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from mfa_fsm import (
    CyberArkFlow,
    EntrustConfig,
    EntrustFlow,
    EventNotAllowed,
    Flow,
    InvalidInput,
    MfaError,
    UsageError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.testing import CyberArkEmulator, EmulatorServer, EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_KBA
from tests.support.cyberark import config_for, pick

#: name -> a value a hostile or broken client might send
HOSTILE: dict[str, Any] = {
    "oversize": "7" * 10_000,
    "empty": "",
    "blank": "   ",
    "non-ASCII": "пароль-١٢٣",
    "full-width digits": "\uff11\uff12\uff13\uff14\uff15\uff16",
    "NUL": "1234\x005678",
    "CR/LF": "1234\r\nSet-Cookie: x=1",
    "escape sequence": "\x1b[2J1234",
    "SQL injection": "' OR '1'='1' --",
    "JSON injection": '", "Action": "Poll", "x": "',
    "HTML injection": "<script>alert(1)</script>",
    "path traversal": "../../etc/passwd",
    "URL-encoded path": "%2e%2e%2fadmin",
    "bidi override": "1234\u202e5678",
    "lone surrogate": "ab\ud800cd",
    "list": ["123456"],
    "dict": {"$ne": ""},
    "int": 123456,
    "bool": True,
    "float": 1.5,
    "bytes": b"123456",
    "None": None,
}
#: the hostile values that are still legal free text (a password may contain them)
LEGAL_TEXT = frozenset(
    {
        "non-ASCII",
        "full-width digits",
        "SQL injection",
        "JSON injection",
        "HTML injection",
        "path traversal",
        "URL-encoded path",
        "bidi override",
    }
)
DEFINED_OUTCOMES = {
    ("AwaitingFirstFactor", None),  # Entrust: a wrong password, tries left
    ("SecondFactorSelected", None),  # Entrust: a wrong answer, tries left
    ("Failed", "rejected"),  # CyberArk: a wrong answer ends the package
    ("Failed", "locked"),  # Entrust: no tries left
}

Reach = Callable[[Flow, EmulatorServer], None]
Base = Callable[[Flow, EmulatorServer], dict[str, Any]]


def nothing(flow: Flow, emulator: EmulatorServer) -> None:
    pass


def no_data(flow: Flow, emulator: EmulatorServer) -> dict[str, Any]:
    return {}


def send(event: str, **data: Any) -> Reach:
    def reach(flow: Flow, emulator: EmulatorServer) -> None:
        flow.send(event, **data)

    return reach


def then(*steps: Reach) -> Reach:
    def reach(flow: Flow, emulator: EmulatorServer) -> None:
        for step in steps:
            step(flow, emulator)

    return reach


def choose(label: str) -> Reach:
    def reach(flow: Flow, emulator: EmulatorServer) -> None:
        flow.send("select_second_factor", factor=pick(flow.view(), label))

    return reach


def kba_answers(flow: Flow, emulator: EmulatorServer) -> list[str]:
    challenge = flow.view().challenge
    assert challenge is not None
    return [DEMO_KBA[question] for question in challenge.questions]


@attrs.frozen
class Field:
    """One field of one event: how to reach the state that takes it, and its kind."""

    provider: str
    event: str  # "start": the provider's start(); otherwise an event of the flow
    name: str
    user: str
    reach: Reach = nothing
    base: Base = no_data  # the event's other data, all valid
    free_text: bool = False  # a password or an answer
    optional: bool = False  # None means "not given", which is no hostile value
    in_list: bool = False  # the hostile value is the first of a list of answers
    right: Callable[[Flow, EmulatorServer], list[str]] | None = None  # the other answers


ALICE = "alice-password"
FIELDS: dict[str, Field] = {
    field.provider + " " + field.event + "(" + field.name + ")" + suffix: field
    for suffix, field in [
        ("", Field("entrust", "start", "user", "jsmith")),
        ("", Field("entrust", "start", "first_factor", "jsmith", optional=True)),
        # A user the IdP refuses: while Entrust takes any flow_id (see gap()), no flow starts,
        # so no hostile id is logged, where the suite's guard would take it for one of the
        # passwords sent below.
        ("", Field("entrust", "start", "flow_id", "blocked", optional=True)),
        (
            "",
            Field("entrust", "submit_first_factor", "answer", "pwuser", free_text=True),
        ),
        (
            " with EXTERNAL",
            Field("entrust", "submit_first_factor", "answer", "jsmith", optional=True),
        ),
        (
            "",
            Field(
                "entrust",
                "select_second_factor",
                "factor",
                "jsmith",
                reach=send("submit_first_factor"),
            ),
        ),
        (
            "",
            Field(
                "entrust",
                "select_second_factor",
                "delivery",
                "jsmith",
                reach=send("submit_first_factor"),
                base=lambda flow, emulator: {"factor": "OTP"},
                optional=True,
            ),
        ),
        (
            " to an OTP",
            Field(
                "entrust",
                "submit_response",
                "answer",
                "jsmith",
                reach=then(send("submit_first_factor"), send("select_second_factor", factor="OTP")),
            ),
        ),
        (
            " to KBA",
            Field(
                "entrust",
                "submit_response",
                "answers",
                "jsmith",
                reach=then(send("submit_first_factor"), send("select_second_factor", factor="KBA")),
                free_text=True,
                in_list=True,
                right=kba_answers,
            ),
        ),
        ("", Field("cyberark", "start", "user", "alice")),
        ("", Field("cyberark", "start", "flow_id", "alice", optional=True)),
        ("", Field("cyberark", "submit_first_factor", "answer", "alice", free_text=True)),
        (
            "",
            Field(
                "cyberark",
                "submit_first_factor",
                "answers",
                "alice",
                base=lambda flow, emulator: {"answer": ALICE},
                optional=True,
            ),
        ),
        (
            " to a push",
            Field("cyberark", "submit_first_factor", "answer", "bob", optional=True),
        ),
        (
            "",
            Field(
                "cyberark",
                "select_second_factor",
                "factor",
                "alice",
                reach=send("submit_first_factor", answer=ALICE),
            ),
        ),
        (
            " to an SMS",
            Field(
                "cyberark",
                "submit_response",
                "answer",
                "alice",
                reach=then(send("submit_first_factor", answer=ALICE), choose("SMS")),
            ),
        ),
        (
            " to a phone call",
            Field(
                "cyberark",
                "submit_response",
                "answer",
                "grace",
                reach=then(send("submit_first_factor", answer="grace-password"), choose("Phone")),
            ),
        ),
        (
            " to a question",
            Field(
                "cyberark",
                "submit_response",
                "answer",
                "alice",
                reach=then(send("submit_first_factor", answer=ALICE), choose("Security")),
                free_text=True,
            ),
        ),
        (
            " to two questions",
            Field(
                "cyberark",
                "submit_response",
                "answers",
                "carol",
                reach=send("submit_first_factor", answer="carol-password"),
                free_text=True,
                in_list=True,
                right=lambda flow, emulator: ["Beetle", "Teal"],
            ),
        ),
    ]
}


#: Known gaps, in code this work does not own (the fixes are in the hardening report): each
#: has its own test below, which flips to passing once the gap is closed.
ENTRUST_FLOW_ID = "entrust start(flow_id)"
NOT_UNICODE = "lone surrogate"


def cases() -> Iterator[Any]:
    for field_name, field in FIELDS.items():
        for value_name, value in HOSTILE.items():
            if value is None and field.optional:
                continue
            if field_name == ENTRUST_FLOW_ID or (field.free_text and value_name == NOT_UNICODE):
                continue
            yield pytest.param(field_name, value_name, id=f"{field_name}-{value_name}")


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, EmulatorServer]]:
    with EntrustEmulator() as entrust, CyberArkEmulator(pod_fqdn_as_url=True) as cyberark:
        yield {"entrust": entrust, "cyberark": cyberark}


def begin(provider: str, emulator: EmulatorServer, who: str, **options: Any) -> Flow:
    """Start a flow for user ``who``; ``options`` may replace any argument, the user too."""
    if provider == "entrust":
        assert isinstance(emulator, EntrustEmulator)
        config = EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)
        # A hostile id arrives as a typed user; the others are users the app vouches for.
        user = {} if "user" in options else {"verified_user": VerifiedUser(who)}
        return EntrustFlow.start(**{"config": config, **user, **options})
    assert isinstance(emulator, CyberArkEmulator)
    return CyberArkFlow.start(**{"config": config_for(emulator), "user": who, **options})


def leaves(data: Any) -> Iterator[Any]:
    """Every scalar in a JSON body."""
    if isinstance(data, dict):
        for item in data.values():
            yield from leaves(item)
    elif isinstance(data, list):
        for item in data:
            yield from leaves(item)
    else:
        yield data


def assert_not_echoed(error: MfaError, value: Any) -> None:
    """The message names no part of the value (short scalars aside: "1.5", "True")."""
    text = f"{error} {error!r}"
    probes = [value] if isinstance(value, str) else [repr(value), str(value)]
    for probe in probes:
        if len(probe.strip()) >= 4:
            assert probe not in text, "the error repeats the value"
    if isinstance(value, str) and len(value) > 40:
        assert value[:40] not in text, "the error repeats the start of the value"


def step(flow: Flow | None, field: Field, emulator: EmulatorServer, data: dict[str, Any]) -> None:
    if flow is None:
        begin(field.provider, emulator, field.user, **data)
    else:
        flow.send(field.event, **data)


@pytest.mark.parametrize(("field_name", "value_name"), list(cases()))
def test_hostile_value(
    emulators: dict[str, EmulatorServer], field_name: str, value_name: str
) -> None:
    """A hostile value is refused before any IdP call, naming the field and not the value,
    with the flow unchanged; only legal text in a password or answer reaches the IdP, as
    typed, and moves the flow to a defined outcome."""
    check_value(emulators, field_name, value_name)


def test_hostile_entrust_flow_id(emulators: dict[str, EmulatorServer]) -> None:
    """Entrust's start refuses a hostile flow_id as CyberArk's does (test_hostile_value)."""
    for value_name, value in HOSTILE.items():
        if value is not None:
            check_value(emulators, ENTRUST_FLOW_ID, value_name)


def test_free_text_that_is_no_unicode(emulators: dict[str, EmulatorServer]) -> None:
    """A password or answer holding a lone surrogate, which no IdP can decode (the Entrust
    emulator drops the connection), is refused like a control character."""
    for field_name, field in FIELDS.items():
        if field.free_text:
            check_value(emulators, field_name, NOT_UNICODE)


def check_value(emulators: dict[str, EmulatorServer], field_name: str, value_name: str) -> None:
    field = FIELDS[field_name]
    value = HOSTILE[value_name]
    emulator = emulators[field.provider]
    if isinstance(emulator, EntrustEmulator):
        emulator.unlock(field.user)
    flow: Flow | None = None
    if field.event != "start":
        flow = begin(field.provider, emulator, field.user)
        field.reach(flow, emulator)
    before = flow.snapshot() if flow is not None else None
    data = field.base(flow, emulator) if flow is not None else {}
    sent = value
    if field.in_list and isinstance(value, str) and flow is not None:
        assert field.right is not None
        sent = [value, *field.right(flow, emulator)[1:]]
    data[field.name] = sent
    calls = len(emulator.calls)
    legal = field.free_text and value_name in LEGAL_TEXT
    if not legal:
        with pytest.raises(InvalidInput) as caught:
            step(flow, field, emulator, data)
        assert caught.value.field == field.name
        assert_not_echoed(caught.value, value)
        assert len(emulator.calls) == calls, "a refused value reached the IdP"
        if flow is not None:
            assert flow.snapshot() == before
        return
    assert flow is not None and before is not None
    view = flow.send(field.event, **data)
    assert view.version == before.version + 1
    assert (view.state, view.failure) in DEFINED_OUTCOMES
    received = emulator.calls[-1].body
    assert value in leaves(received), "the IdP did not get the text exactly as typed"


@pytest.mark.parametrize("provider", ["entrust", "cyberark"])
def test_hostile_event_names(emulators: dict[str, EmulatorServer], provider: str) -> None:
    """An event name that is no event of the flow is EventNotAllowed, before any IdP call,
    and the message does not repeat it."""
    emulator = emulators[provider]
    flow = begin(provider, emulator, "jsmith" if provider == "entrust" else "alice")
    before, calls = flow.snapshot(), len(emulator.calls)
    for value in HOSTILE.values():
        with pytest.raises(EventNotAllowed) as caught:
            flow.send(value)
        assert_not_echoed(caught.value, value)
    assert flow.snapshot() == before and len(emulator.calls) == calls


@pytest.mark.parametrize("provider", ["entrust", "cyberark"])
def test_hostile_field_names(emulators: dict[str, EmulatorServer], provider: str) -> None:
    """A field the event does not take is InvalidInput, and its name (which the request
    chose) is not repeated."""
    emulator = emulators[provider]
    flow = begin(provider, emulator, "jsmith" if provider == "entrust" else "alice")
    for name in ("x" * 10_000, "a\r\nSet-Cookie: x=1", "<script>alert(1)</script>"):
        with pytest.raises(InvalidInput) as caught:
            flow.send("cancel", **{name: "1"})
        assert_not_echoed(caught.value, name)
    assert not flow.is_final


def test_known_event_out_of_turn_is_event_not_allowed(
    emulators: dict[str, EmulatorServer],
) -> None:
    """A real event the state does not take is EventNotAllowed (a UsageError), not a call."""
    emulator = emulators["cyberark"]
    flow = begin("cyberark", emulator, "alice")
    calls = len(emulator.calls)
    with pytest.raises(UsageError):
        flow.send("poll")
    assert len(emulator.calls) == calls
