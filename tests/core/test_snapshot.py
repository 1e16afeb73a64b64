"""The snapshot value: exact JSON round trips, strict parsing, no secrets in repr."""

from __future__ import annotations

import json
from typing import Any, Union

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_fsm import Challenge, Choice, FlowView, Result, ResultUnavailable, Snapshot, SnapshotError
from mfa_fsm.core import snapshot as snapshot_module
from mfa_fsm.core.snapshot import MIGRATIONS, SCHEMA_VERSION, STATES, handed_off, migrate


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


# -- mutation-testing pins (issue 15): exact text, exact refusals, boundaries, hand-off --------
#
# Each test below kills mutants of core/snapshot.py that the tests above let live (measured
# with `MUTATION_FRESH=1 bash scripts/mutation.sh core/snapshot.py`). They go through the
# public API only: to_json/to_dict/from_json/from_dict, FlowView, migrate and handed_off.


@pytest.fixture(autouse=True)
def _fresh_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test builds the codecs it uses, instead of the first test that happens to run.

    The module's converter caches one generated hook per class. Without a fresh one, only
    the first test to read a snapshot would run the hook factories, so a mistake in one (a
    wrong message, a check left out) would be caught only by whichever test came first, and
    a mutation run, which reruns just the tests seen calling the mutated function, would skip
    the tests that pin those messages.
    """
    monkeypatch.setattr(snapshot_module, "_CONVERTER", snapshot_module._converter())
    monkeypatch.setattr(snapshot_module, "_EXPLAINER", snapshot_module._converter(detailed=True))


@attrs.frozen
class VaultContext:
    """A context that reaches every codec path ToyContext does not: secrets with a factory
    default and without any default, ``Union`` spelled the old way, floats inside tuples and
    dicts, and values typed ``Any``."""

    session: str = attrs.field(repr=False)
    cookies: dict[str, str] = attrs.field(factory=dict, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    step: str = "start"
    rate: Union[float, None] = None  # noqa: UP007 - typing.Union is decoded too
    marks: tuple[float, ...] = ()
    weights: dict[str, float] = attrs.field(factory=dict)
    notes: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ListContext:
    """A context with a field type snapshots do not support (a list)."""

    items: list[str] = attrs.field(factory=list)


Snapshot.contexts["toy-vault"] = VaultContext


def _data(**changes: object) -> dict[str, Any]:
    return {**json.loads(make().to_json()), **changes}


def _vault(**changes: object) -> Snapshot:
    context = VaultContext(session="sess-secret", cookies={"sid": "cookie-secret"}, token="tok")
    return make(provider="toy-vault", context=attrs.evolve(context, **changes))


def test_the_exact_json_text_is_pinned() -> None:
    """Every field's name, order and value as written; defaults (also factory ones) left out."""
    assert make().to_json() == (
        '{"schema":2,"provider":"toy","flow_id":"f-1","user_id":"u",'
        '"state":"SecondFactorSelected","version":2,"created_at":1700000000.25,'
        '"deadline":1700000900.0,"context":{"token":"sekrit-token","ids":["a","b"],'
        '"counts":{"OTP":3},"ratio":0.5},"choices":[{"id":"OTP","kind":"otp","label":"Code",'
        '"deliveries":["SMS","EMAIL"],"default_delivery":"SMS"}],"challenge":{"factor":"OTP",'
        '"kind":"otp","prompt":"Type it","delivery":"SMS","attempts_left":4}}'
    )
    # Values equal to a default but not the default object itself are left out as well.
    equal = make(
        context=ToyContext(token=None, ratio=float("0"), counts={}),
        challenge=None,
        result=Result("u", token="".join([]), cookies={}),
    )
    assert equal.to_json().endswith(
        '"context":{},"choices":[{"id":"OTP","kind":"otp","label":"Code",'
        '"deliveries":["SMS","EMAIL"],"default_delivery":"SMS"}],"result":{"user_id":"u"}}'
    )


def test_to_dict_keeps_non_finite_numbers_everywhere() -> None:
    """to_dict never refuses NaN or infinities, at the top, in a tuple or in a dict."""
    inf = float("inf")
    snapshot = _vault(marks=(1.5, inf), weights={"w": -inf})
    data = attrs.evolve(snapshot, deadline=inf).to_dict()
    assert data["schema"] == SCHEMA_VERSION
    assert data["deadline"] == inf
    assert data["context"]["marks"] == [1.5, inf]
    assert data["context"]["weights"] == {"w": -inf}


def test_non_finite_text_is_compact_and_keeps_non_ascii() -> None:
    """The standard-library fallback writes the same compact, non-escaped JSON (and a
    non-finite time read back is refused: only a tampered record holds one)."""
    text = make(deadline=float("-inf"), failure_detail="Schlüssel").to_json()
    assert '"deadline":-Infinity,' in text
    assert '"failure_detail":"Schlüssel"' in text
    assert ", " not in text and '": ' not in text
    with pytest.raises(SnapshotError, match=r"^snapshot\.deadline is not a finite number"):
        Snapshot.from_json(text)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_nested_in_a_context_round_trip(value: float) -> None:
    """msgspec would write these as null; every one is written as the standard library does."""
    snapshot = _vault(marks=(value,), weights={"w": value}, rate=value)
    again = Snapshot.from_json(snapshot.to_json())
    assert repr(again.context.marks) == repr((value,))
    assert repr(again.context.weights) == repr({"w": value})
    assert repr(again.context.rate) == repr(value)


@pytest.mark.parametrize("where", ["marks", "weights"])
def test_a_non_finite_number_only_inside_a_tuple_or_dict_is_not_written_as_null(
    where: str,
) -> None:
    inf = float("inf")
    snapshot = _vault(**{where: (inf,) if where == "marks" else {"w": inf}})
    text = snapshot.to_json()
    assert "null" not in text and "Infinity" in text
    assert Snapshot.from_json(text) == snapshot


def test_the_largest_finite_float_takes_the_fast_path_exactly() -> None:
    biggest = 1.7976931348623157e308
    text = make(deadline=biggest, created_at=-biggest).to_json()
    assert '"created_at":-1.7976931348623157e308,"deadline":1.7976931348623157e308' in text
    assert Snapshot.from_json(text).deadline == biggest


def test_the_vault_context_round_trips_with_every_codec_path() -> None:
    snapshot = _vault(
        step="after",
        rate=0.25,
        marks=(1.0, 2.5),
        weights={"a": 0.5},
        notes={"k": "x", "n": {"m": 1}},
    )
    assert Snapshot.from_json(snapshot.to_json()) == snapshot


def test_integers_in_float_places_are_read_as_floats() -> None:
    """Optional floats, tuple items and dict values written as integers load as floats."""
    data = {
        **_vault().to_dict(),
        "next_poll_at": 5,
        "context": {"session": "s", "rate": 3, "marks": [1, 2.5], "weights": {"a": 4}},
    }
    snapshot = Snapshot.from_dict(data)
    context = snapshot.context
    for value in (snapshot.next_poll_at, context.rate, *context.marks, context.weights["a"]):
        assert type(value) is float
    assert (snapshot.next_poll_at, context.rate, context.marks) == (5.0, 3.0, (1.0, 2.5))


def test_nulls_are_read_where_the_type_allows_them() -> None:
    data = _data(challenge=None, failure=None, failure_detail=None, next_poll_at=None)
    snapshot = Snapshot.from_dict(data)
    assert (snapshot.challenge, snapshot.failure, snapshot.failure_detail) == (None, None, None)
    assert Snapshot.from_dict({**_vault().to_dict(), "context": {"session": "s", "rate": None}})


_TAIL = "; the snapshot was altered or is foreign"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"challenge": "x"}, "snapshot.challenge must be an object"),
        ({"choices": {}}, "snapshot.choices must be a list"),
        ({"choices": ["x"]}, "snapshot.choices must be an object"),
        ({"choices": [{"id": "x"}]}, "snapshot.choices is incomplete or invalid"),
        (
            {"challenge": {"factor": "OTP", "kind": "otp"}},
            "snapshot.challenge is incomplete or invalid",
        ),
        ({"flow_id": None}, "snapshot.flow_id has the wrong type"),
        ({"version": "2"}, "snapshot.version has the wrong type"),
        ({"version": True}, "snapshot.version has the wrong type"),
        ({"deadline": True}, "snapshot.deadline has the wrong type"),
        ({"next_poll_at": "5"}, "snapshot.next_poll_at has the wrong type"),
        ({"failure_detail": 5}, "snapshot.failure_detail has the wrong type"),
        # cattrs' default hooks would coerce each of these; the codec's refuse them.
        ({"user_id": 1.5}, "snapshot.user_id has the wrong type"),
        ({"created_at": "1700000000.25"}, "snapshot.created_at has the wrong type"),
        ({"context": {"counts": {"a": 1.0}}}, "snapshot.context.counts has the wrong type"),
        ({"context": {"ids": ["a", 2.5]}}, "snapshot.context.ids has the wrong type"),
        ({"context": {"token": True}}, "snapshot.context.token has the wrong type"),
        (
            {"result": {"user_id": "u", "handed_off": 0}},
            "snapshot.result.handed_off has the wrong type",
        ),
        (
            {"choices": [{"id": "x", "kind": "otp", "label": "l", "deliveries": "SMS"}]},
            "snapshot.choices.deliveries must be a list",
        ),
        ({"extra": 1}, "snapshot has an unknown field 'extra'"),
        ({"context": None}, "snapshot.context must be an object"),
        ({"context": {"unknown": 5}}, "snapshot.context has an unknown field 'unknown'"),
        ({"context": {"token": 5}}, "snapshot.context.token has the wrong type"),
        ({"context": {"ids": [1]}}, "snapshot.context.ids has the wrong type"),
        ({"context": {"ids": "ab"}}, "snapshot.context.ids must be a list"),
        ({"context": {"counts": []}}, "snapshot.context.counts must be an object"),
        ({"context": {"counts": {"a": "1"}}}, "snapshot.context.counts has the wrong type"),
        ({"context": {"ratio": False}}, "snapshot.context.ratio has the wrong type"),
        (
            {"challenge": {"factor": "OTP", "kind": "otp", "prompt": "p", "attempts_left": True}},
            "snapshot.challenge.attempts_left has the wrong type",
        ),
        (
            {"challenge": {"factor": "OTP", "kind": "otp", "prompt": "p", "questions": [1]}},
            "snapshot.challenge.questions has the wrong type",
        ),
        (
            {"challenge": {"factor": "OTP", "kind": "otp", "prompt": "p", "rejected": 1}},
            "snapshot.challenge.rejected has the wrong type",
        ),
        (
            {"choices": [{"id": "x", "kind": "otp", "label": 5}]},
            "snapshot.choices.label has the wrong type",
        ),
        (
            {"choices": [{"id": "x", "kind": "otp", "label": "l", "supported": "yes"}]},
            "snapshot.choices.supported has the wrong type",
        ),
        (
            {"result": {"user_id": "u", "cookies": {"c": 1}}},
            "snapshot.result.cookies has the wrong type",
        ),
    ],
)
def test_every_codec_refusal_names_the_path_exactly(
    change: dict[str, object], problem: str
) -> None:
    with pytest.raises(SnapshotError) as caught:
        Snapshot.from_dict(_data(**change))
    assert str(caught.value) == problem + _TAIL
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_missing_context_is_refused_by_name() -> None:
    data = _data()
    del data["context"]
    with pytest.raises(SnapshotError) as caught:
        Snapshot.from_dict(data)
    assert str(caught.value) == "snapshot.context must be an object" + _TAIL


def test_missing_required_field_is_refused() -> None:
    data = _data()
    del data["flow_id"]
    with pytest.raises(SnapshotError) as caught:
        Snapshot.from_dict(data)
    assert str(caught.value) == "snapshot is incomplete or invalid" + _TAIL


def test_vault_context_refusals_name_the_path() -> None:
    base = _vault().to_dict()
    cases = [
        ({"session": "s", "weights": {"w": True}}, "snapshot.context.weights has the wrong type"),
        ({"session": "s", "marks": ["1"]}, "snapshot.context.marks has the wrong type"),
        ({"session": "s", "rate": "1"}, "snapshot.context.rate has the wrong type"),
        ({"session": "s", "notes": []}, "snapshot.context.notes must be an object"),
        ({"cookies": {}}, "snapshot.context is incomplete or invalid"),
    ]
    for context, problem in cases:
        with pytest.raises(SnapshotError) as caught:
            Snapshot.from_dict({**base, "context": context})
        assert str(caught.value) == problem + _TAIL


def test_a_context_with_an_unsupported_field_type_is_a_programming_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider's context class with a list field fails loudly when first decoded."""
    monkeypatch.setitem(Snapshot.contexts, "toy-list", ListContext)
    with pytest.raises(TypeError, match=r"^snapshots cannot hold values of type list\[str\]$"):
        Snapshot.from_dict(_data(provider="toy-list", context={}))


@pytest.mark.parametrize("provider", [None, 7, ["toy"], {"toy": 1}])
def test_a_provider_that_is_no_name_is_refused(provider: object) -> None:
    with pytest.raises(SnapshotError) as caught:
        Snapshot.from_dict(_data(provider=provider))
    assert str(caught.value) == (
        f"snapshot names unknown provider {provider!r}; import the provider's flow module"
    )


def test_missing_state_is_refused_by_name() -> None:
    data = _data()
    del data["state"]
    with pytest.raises(SnapshotError, match=r"^snapshot names unknown state None$"):
        Snapshot.from_dict(data)


@pytest.mark.parametrize("state", STATES)
def test_every_state_is_read_and_only_final_ones_are_final(state: str) -> None:
    snapshot = Snapshot.from_dict(_data(state=state))
    assert snapshot.state == state
    final = state in ("Completed", "Failed")
    assert snapshot.is_final is final
    assert FlowView.of(snapshot).is_final is final


@pytest.mark.parametrize(
    "reason", ["rejected", "denied", "expired", "locked", "cancelled", "idp_error"]
)
def test_every_failure_reason_is_read(reason: str) -> None:
    assert Snapshot.from_dict(_data(state="Failed", failure=reason)).failure == reason


def test_unknown_failure_reason_is_refused_exactly() -> None:
    with pytest.raises(SnapshotError, match=r"^snapshot names unknown failure reason 'bored'$"):
        Snapshot.from_dict(_data(failure="bored"))


def test_version_zero_is_the_lowest_accepted() -> None:
    assert Snapshot.from_dict(_data(version=0)).version == 0


@pytest.mark.parametrize("text", [None, 5, 1.5])
def test_from_json_of_a_non_text_value_is_refused(text: object) -> None:
    with pytest.raises(SnapshotError, match=r"^snapshot is not valid JSON"):
        Snapshot.from_json(text)  # type: ignore[arg-type]


def test_from_json_reads_bytes() -> None:
    assert Snapshot.from_json(make().to_json().encode()) == make()


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            "2",
            "snapshot schema '2' is not a schema number; the snapshot is not one mfa_fsm "
            "wrote, so start the flow again",
        ),
        (
            True,
            "snapshot schema True is not a schema number; the snapshot is not one mfa_fsm "
            "wrote, so start the flow again",
        ),
        (
            3,
            "snapshot schema 3 was written by a newer mfa_fsm (this one reads schema 2); run "
            "the same mfa_fsm version on every server, or start the flow again",
        ),
        (
            0,
            "snapshot schema 0 is too old for this mfa_fsm (schema 2), which has no migration "
            "from it; start the flow again",
        ),
        (
            -1,
            "snapshot schema -1 is too old for this mfa_fsm (schema 2), which has no migration "
            "from it; start the flow again",
        ),
    ],
)
def test_schema_refusals_say_exactly_what_to_do(schema: object, message: str) -> None:
    data = _data(schema=schema)
    with pytest.raises(SnapshotError) as caught:
        Snapshot.from_dict(data)
    assert str(caught.value) == message
    with pytest.raises(SnapshotError):
        migrate(data)


def test_migrate_leaves_current_data_alone_and_upgrades_older_data_step_by_step() -> None:
    current = _data()
    assert migrate(current) == current
    old = {**current, "schema": 1}
    upgraded = migrate(old)
    assert upgraded == current
    assert upgraded["schema"] == SCHEMA_VERSION
    assert old["schema"] == 1


def test_a_migration_step_gets_a_copy_of_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step may change its argument in place; the caller's data stays as it was."""

    def rename(data: dict[str, Any]) -> dict[str, Any]:
        data["version"] = data.pop("step")
        return data

    monkeypatch.setitem(MIGRATIONS, 0, rename)
    old = _data(schema=0)
    old["step"] = old.pop("version")
    frozen = dict(old)
    assert Snapshot.from_dict(old) == make()
    assert old == frozen


# -- handed_off --------------------------------------------------------------------------------


def _completed(**changes: object) -> Snapshot:
    result = Result("u", "U Ser", token="final-token", expires_at=9.5, cookies={"c": "v"})
    return attrs.evolve(_vault(step="after"), **{"state": "Completed", "result": result, **changes})


def test_hand_off_erases_every_secret_and_keeps_what_a_page_shows() -> None:
    snapshot = _completed()
    kept = handed_off(snapshot, now=1_700_000_100.0)
    assert kept.result == Result("u", "U Ser", token="", expires_at=9.5, handed_off=True)
    assert kept.context == VaultContext(session="sess-secret", step="after")
    assert kept.context.cookies == {} and kept.context.token is None
    assert kept.version == snapshot.version + 1
    assert kept.deadline == 1_700_000_100.0
    assert attrs.evolve(kept, result=None, context=None, version=2, deadline=0.0) == (
        attrs.evolve(snapshot, result=None, context=None, deadline=0.0)
    )
    assert Snapshot.from_json(kept.to_json()) == kept


def test_hand_off_never_moves_the_deadline_later() -> None:
    snapshot = _completed()
    assert handed_off(snapshot, now=snapshot.deadline + 50).deadline == snapshot.deadline


def test_hand_off_keeps_a_context_that_is_no_attrs_class() -> None:
    snapshot = attrs.evolve(_completed(), context={"plain": "data"})
    assert handed_off(snapshot, now=0.0).context == {"plain": "data"}


@pytest.mark.parametrize(
    ("changes", "handed", "why"),
    [
        (
            {"state": "Failed"},
            False,
            "it is in state 'Failed', not Completed; hand off after the final step",
        ),
        (
            {"result": None},
            False,
            "it is in state 'Completed', not Completed; hand off after the final step",
        ),
        (
            {"result": Result("u", handed_off=True)},
            True,
            "its result was already handed to the application and erased",
        ),
    ],
)
def test_hand_off_without_a_result_raises_and_changes_nothing(
    changes: dict[str, object], handed: bool, why: str
) -> None:
    snapshot = _completed(**changes)
    before = snapshot.to_json()
    with pytest.raises(ResultUnavailable) as caught:
        handed_off(snapshot, now=0.0)
    error = caught.value
    assert (error.flow_id, error.state, error.handed_off) == ("f-1", snapshot.state, handed)
    assert str(error).endswith(f" has no result to hand off: {why}")
    assert "f-1" not in str(error)
    assert snapshot.to_json() == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # An integer past float's range in a time field (float() would raise OverflowError).
        (
            {**json.loads(make().to_json()), "deadline": int("9" * 400)},
            r"^snapshot\.deadline has the wrong type",
        ),
        # Unknown fields of mixed key types (a dict built in code, not JSON).
        ({**json.loads(make().to_json()), 1: "x", "z": 2}, r"^snapshot has an unknown field"),
    ],
)
def test_hostile_numbers_and_keys_are_snapshot_errors(data: object, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(data)


def test_a_non_string_key_in_a_context_mapping_is_refused() -> None:
    """Context dicts are JSON objects: their keys are strings (Entrust's remaining_attempts)."""
    data = json.loads(make().to_json())
    data["context"]["counts"] = {1: 5}
    with pytest.raises(SnapshotError, match="counts"):
        Snapshot.from_dict(data)
