"""The snapshot value: exact JSON round trips, strict parsing, no secrets in repr."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_fsm import Challenge, Choice, FlowView, Result, Snapshot, SnapshotError
from mfa_fsm.core.snapshot import SCHEMA_VERSION, STATES


@attrs.frozen
class ToyContext:
    token: str | None = attrs.field(default=None, repr=False)
    ids: tuple[str, ...] = ()
    counts: dict[str, int] = attrs.field(factory=dict)
    ratio: float = 0.0


Snapshot.contexts["toy"] = ToyContext


def make(**changes: object) -> Snapshot:
    base = Snapshot(
        provider="toy",
        flow_id="f-1",
        user_id="u",
        state="SecondFactorSelected",
        version=2,
        created_at=1_700_000_000.25,
        deadline=1_700_000_900.0,
        context=ToyContext(token="sekrit-token", ids=("a", "b"), counts={"OTP": 3}, ratio=0.5),
        choices=(
            Choice("OTP", "otp", "Code", deliveries=("SMS", "EMAIL"), default_delivery="SMS"),
        ),
        challenge=Challenge("OTP", "otp", "Type it", delivery="SMS", attempts_left=4),
        result=None,
    )
    return attrs.evolve(base, **changes)


def test_round_trip_is_exact() -> None:
    """from_json(to_json(s)) == s, and encoding again gives the same text."""
    snapshot = make(result=Result("u", "U Ser", token="final", cookies={".ASPXAUTH": "c"}))
    text = snapshot.to_json()
    again = Snapshot.from_json(text)
    assert again == snapshot
    assert again.to_json() == text


def test_schema_is_always_written_first() -> None:
    """The schema version leads every snapshot, even though it is a default."""
    assert make().to_json().startswith(f'{{"schema":{SCHEMA_VERSION},')


def test_defaults_are_left_out() -> None:
    """Fields at their default are not written, keeping snapshots small for cookies."""
    data = json.loads(make().to_json())
    assert "failure" not in data
    assert "questions" not in data["challenge"]


def test_secrets_are_not_in_repr() -> None:
    """Context tokens and result tokens/cookies never appear in a repr."""
    snapshot = make(result=Result("u", token="final-token-x", cookies={"c": "cookie-value"}))
    text = repr(snapshot) + repr(FlowView.of(snapshot)) + repr(snapshot.result)
    for secret in ("sekrit-token", "final-token-x", "cookie-value"):
        assert secret not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": SCHEMA_VERSION + 1}, "schema"),
        ({"schema": None}, "schema"),
        ({"provider": "nobody"}, "provider"),
        ({"state": "Limbo"}, "state"),
        ({"version": True}, "version"),
        ({"version": 1.5}, "version"),
        ({"deadline": "soon"}, "deadline"),
        ({"failure": "bored"}, "failure"),
        ({"extra": 1}, "extra"),
        ({"choices": {"id": "x"}}, "choices"),
        ({"context": {"token": 5}}, "context.token"),
        ({"context": {"unknown": 5}}, "context"),
        ({"challenge": {"factor": "OTP"}}, "challenge"),
    ],
)
def test_malformed_fields_are_refused(change: dict[str, object], message: str) -> None:
    """Any field of the wrong type, unknown name or value raises SnapshotError naming it."""
    data = {**json.loads(make().to_json()), **change}
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(data)


@pytest.mark.parametrize("text", ["", "{", "[1]", "null", '"x"', b"\xff\xfe"])
def test_non_snapshots_are_refused(text: str | bytes) -> None:
    """Text that is not a snapshot object raises SnapshotError, never another exception."""
    with pytest.raises(SnapshotError):
        Snapshot.from_json(text)


def test_negative_version_is_refused() -> None:
    """A negative step counter cannot come from the engine."""
    with pytest.raises(SnapshotError):
        Snapshot.from_dict({**json.loads(make().to_json()), "version": -1})


def test_int_where_float_expected_is_read_as_float() -> None:
    """Epoch seconds written as integers by another JSON producer load as floats."""
    data = {**json.loads(make().to_json()), "deadline": 1_700_000_900}
    snapshot = Snapshot.from_dict(data)
    assert snapshot.deadline == 1_700_000_900.0
    assert isinstance(snapshot.deadline, float)


texts = st.text(max_size=20)
optional_texts = st.none() | texts


@given(
    state=st.sampled_from(STATES),
    version=st.integers(min_value=0, max_value=2**40),
    deadline=st.floats(allow_nan=False, allow_infinity=False),
    token=optional_texts,
    ids=st.lists(texts, max_size=3).map(tuple),
    counts=st.dictionaries(texts, st.integers(), max_size=3),
    labels=st.lists(texts, max_size=3),
    detail=optional_texts,
)
def test_any_snapshot_round_trips(
    state: str,
    version: int,
    deadline: float,
    token: str | None,
    ids: tuple[str, ...],
    counts: dict[str, int],
    labels: list[str],
    detail: str | None,
) -> None:
    """Every snapshot the types allow survives to_json/from_json unchanged."""
    snapshot = make(
        state=state,
        version=version,
        deadline=deadline,
        context=ToyContext(token=token, ids=ids, counts=counts),
        choices=tuple(Choice(label, "otp", label, detail=detail) for label in labels),
        failure_detail=detail,
    )
    assert Snapshot.from_json(snapshot.to_json()) == snapshot


def test_lone_surrogates_round_trip_and_non_finite_times_are_refused() -> None:
    """A lone surrogate (which the fast JSON writer cannot write) is written by the standard
    library and read back; a NaN or infinite time is written but refused when read: a
    deadline of NaN or Infinity would make a flow that never expires."""
    snapshot = make(failure_detail="half \ud800 a pair")
    assert Snapshot.from_json(snapshot.to_json()).failure_detail == "half \ud800 a pair"
    for field in ("deadline", "created_at", "next_poll_at"):
        for bad in (float("inf"), float("nan"), float("-inf")):
            text = make(**{field: bad}).to_json()
            with pytest.raises(SnapshotError, match=f"{field} is not a finite number"):
                Snapshot.from_json(text)


@pytest.mark.parametrize("user_id", ["jsmith\nadmin", "a\x00b", "", "x" * 300, "j\u00f6rg"])
def test_user_id_is_checked_like_on_start(user_id: str) -> None:
    """A stored user id that start() would refuse (control characters, empty, too long,
    non-ASCII) is refused on decoding: it would be sent to the IdP and logged."""
    data = {**json.loads(make().to_json()), "user_id": user_id}
    with pytest.raises(SnapshotError, match="user_id"):
        Snapshot.from_dict(data)


def test_deeply_nested_json_is_a_snapshot_error() -> None:
    """Nesting deep enough to exhaust the parser's (or the decoder's) recursion is refused
    as SnapshotError, never RecursionError."""
    for depth in (1_000, 100_000):
        deep = "[" * depth + "]" * depth
        for text in (deep, '{"schema":1,"context":' + deep + "}"):
            with pytest.raises(SnapshotError):
                Snapshot.from_json(text)


def test_big_integers_stay_exact() -> None:
    """Integers beyond 64 bits survive the round trip as integers (no float rounding)."""
    snapshot = make(context=ToyContext(counts={"n": 2**70 + 1}))
    assert Snapshot.from_json(snapshot.to_json()).context.counts["n"] == 2**70 + 1


# -- every field and refusal pinned --------------------------------------------------------


def test_the_view_carries_every_public_field() -> None:
    full = make(
        version=3,
        choices=(Choice("TOKEN", "token", "Hardware token"),),
        challenge=Challenge("TOKEN", "token", "Enter the code"),
        next_poll_at=1_700_000_001.0,
        failure="denied",
        failure_detail="the user said no",
        result=Result(user_id="u", token="t"),
    )
    view = FlowView.of(full)
    assert (view.flow_id, view.provider, view.state) == (full.flow_id, full.provider, full.state)
    assert (view.version, view.deadline) == (3, full.deadline)
    assert (view.choices, view.challenge) == (full.choices, full.challenge)
    assert (view.next_poll_at, view.failure) == (1_700_000_001.0, "denied")
    assert (view.failure_detail, view.result) == ("the user said no", full.result)


def test_json_keeps_non_ascii_text_as_is() -> None:
    text = make(failure_detail="Zugriff verweigert: Schlüssel").to_json()
    assert "Schlüssel" in text and "\\u00fc" not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], r"^a snapshot must be a JSON object; pass what to_json\(\) returned$"),
        (
            {**json.loads(make().to_json()), "state": "Sleeping"},
            r"^snapshot names unknown state 'Sleeping'$",
        ),
        (
            {**json.loads(make().to_json()), "version": -1},
            r"^snapshot version must not be negative$",
        ),
        (
            {**json.loads(make().to_json()), "provider": 7},
            r"^snapshot names unknown provider 7; import the provider's flow module$",
        ),
        (
            {**json.loads(make().to_json()), "deadline": "soon"},
            r"^snapshot\.deadline has the wrong type; the snapshot was altered or is foreign$",
        ),
    ],
)
def test_refusals_say_exactly_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(data)


def test_invalid_json_says_to_start_again() -> None:
    with pytest.raises(
        SnapshotError,
        match=r"^snapshot is not valid JSON \(truncated, altered or nested too deeply\?\); "
        r"start the flow again$",
    ):
        Snapshot.from_json("{")


def test_reprs_hold_no_flow_id() -> None:
    """A flow id is a bearer handle: neither a Snapshot's nor a FlowView's repr shows it."""
    snapshot = make(flow_id="f" * 24 + "bearerhandle")
    for value in (snapshot, FlowView.of(snapshot)):
        assert "bearerhandle" not in repr(value)
        assert "bearerhandle" not in str(value)
        assert value.flow_id.endswith("bearerhandle")
