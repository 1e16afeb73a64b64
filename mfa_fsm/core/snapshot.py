"""The snapshot: everything the next request needs to continue a flow, as an immutable value.

A snapshot round-trips exactly through JSON (``Snapshot.from_json(s.to_json()) == s``). The
public part (state, choices, challenge, result) is what a page renders; the provider's private
part (``context``: tokens, session ids, cookies) is never shown in a repr. ``from_json``
checks every field's type, so a snapshot that was edited by hand or truncated is refused with
:class:`~mfa_fsm.core.errors.SnapshotError` instead of producing a half-valid flow. Every
snapshot carries its ``schema`` number: one written by an older mfa_fsm is upgraded through
:data:`MIGRATIONS` before it is checked, one written by a newer mfa_fsm is refused.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Union

import attrs
import msgspec

from mfa_fsm.core.errors import InvalidInput, ResultUnavailable, SnapshotError
from mfa_fsm.core.inputs import identifier

#: Written into every snapshot; older ones are upgraded by :func:`migrate`, newer ones refused.
SCHEMA_VERSION = 2

#: How to read snapshots written by an older mfa_fsm: ``MIGRATIONS[n]`` turns the ``to_dict``
#: data of schema ``n`` into that of schema ``n + 1`` (it need not set ``schema``). Empty while
#: there has only been one schema. When a release changes the snapshot's fields, it raises
#: SCHEMA_VERSION and adds the step from the previous one here, so flows that are running
#: during an upgrade carry on; a schema with no path to the current one is refused.
Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {
    # Schema 2 added Result.handed_off (default false): schema 1 data reads unchanged.
    1: lambda data: data,
}

#: The shared state vocabulary (DESIGN.md); every provider's machine uses these names.
STATES = (
    "AwaitingFirstFactor",
    "AwaitingSecondFactor",
    "SecondFactorSelected",
    "OobPending",
    "Completed",
    "Failed",
)
FINAL_STATES = frozenset({"Completed", "Failed"})

#: Why a flow ended in ``Failed``.
FAILURE_REASONS = frozenset({"rejected", "denied", "expired", "locked", "cancelled", "idp_error"})


@attrs.frozen
class Choice:
    """An authenticator (Entrust) or mechanism (CyberArk) the user may pick.

    ``id`` is what ``select_second_factor`` takes; ``kind`` is a provider-independent family
    (``otp``, ``token``, ``push``, ``kba``, ``grid``, ``password``, ``call``, ...); ``supported``
    is false for a factor mfa_fsm cannot drive (shown, never offered as a button).
    """

    id: str
    kind: str
    label: str
    supported: bool = True
    deliveries: tuple[str, ...] = ()
    default_delivery: str | None = None
    detail: str | None = None


@attrs.frozen
class Challenge:
    """What the user must see to answer the running challenge."""

    factor: str
    kind: str
    prompt: str
    delivery: str | None = None
    questions: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()
    number_to_match: str | None = None
    attempts_left: int | None = None
    accepts_code: bool = True
    rejected: bool = False


@attrs.frozen
class Result:
    """What a completed flow yields: the IdP's final token and, where the IdP sets them, cookies."""

    user_id: str
    display_name: str | None = None
    token: str = attrs.field(default="", repr=False)
    expires_at: float | None = None
    cookies: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: True once the result was handed to the application (``Engine.hand_off``): ``token``
    #: and ``cookies`` are then erased, and only what a page shows is left.
    handed_off: bool = False


@attrs.frozen
class Snapshot:
    """An immutable, JSON-serialisable picture of one flow between two requests.

    ``version`` counts the steps the flow has taken; stores compare-and-set on it.
    ``deadline`` (epoch seconds) is the hard limit of the current state: any event after it
    ends the flow ``Failed(expired)``. ``next_poll_at`` is set in ``OobPending`` only.
    """

    provider: str
    flow_id: str = attrs.field(repr=False)  # a bearer handle: never in a repr
    user_id: str
    state: str
    version: int
    created_at: float
    deadline: float
    context: Any = attrs.field(repr=False)
    choices: tuple[Choice, ...] = ()
    challenge: Challenge | None = None
    next_poll_at: float | None = None
    failure: str | None = None
    failure_detail: str | None = None
    result: Result | None = None
    schema: int = SCHEMA_VERSION

    #: provider name -> the attrs class of its private ``context``; filled by flow classes.
    contexts: ClassVar[dict[str, type]] = {}

    @property
    def is_final(self) -> bool:
        """Whether the flow has ended (``Completed`` or ``Failed``)."""
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-compatible data."""
        # The schema is written even though it is a default: readers check it first.
        return {"schema": self.schema, **_encode(self, finite=False)}

    def to_json(self) -> str:
        """The snapshot as compact JSON text; ``from_json`` gives back an equal snapshot."""
        return _dumps(self)

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        """Rebuild a snapshot from ``to_dict`` data; refuses anything else with SnapshotError."""
        if not isinstance(data, dict):
            raise SnapshotError("a snapshot must be a JSON object; pass what to_json() returned")
        if data.get("schema") != SCHEMA_VERSION:
            data = migrate(data)
        provider = data.get("provider")
        context_class = cls.contexts.get(provider) if isinstance(provider, str) else None
        if context_class is None:
            raise SnapshotError(
                f"snapshot names unknown provider {provider!r}; import the provider's flow module"
            )
        if data.get("state") not in STATES:
            raise SnapshotError(f"snapshot names unknown state {data.get('state')!r}")
        fields = dict(data)
        context = _decode(context_class, fields.pop("context", None), "snapshot.context")
        # ``context`` is typed Any on Snapshot, so the decoded object passes through as is.
        snapshot = _decode(cls, {**fields, "context": context}, "snapshot")
        if snapshot.failure is not None and snapshot.failure not in FAILURE_REASONS:
            raise SnapshotError(f"snapshot names unknown failure reason {snapshot.failure!r}")
        if snapshot.version < 0:
            raise SnapshotError("snapshot version must not be negative")
        _check_strict(snapshot)
        return typing.cast(Snapshot, snapshot)

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        """Parse ``to_json`` output; refuses malformed or foreign text with SnapshotError."""
        try:
            data = _loads(text)
        except (ValueError, TypeError, RecursionError):
            # from None: the parser's message may quote the snapshot's bytes.
            raise SnapshotError(
                "snapshot is not valid JSON (truncated, altered or nested too deeply?); "
                "start the flow again"
            ) from None
        try:
            return cls.from_dict(data)
        except RecursionError:
            raise SnapshotError(
                "snapshot is nested too deeply to be one mfa_fsm wrote; start the flow again"
            ) from None


def _check_strict(snapshot: Snapshot) -> None:
    """Refuse what a tampered store could smuggle past the type checks: a time that is NaN
    or infinite (a flow that never expires), and a user id start() would have refused
    (control characters, non-ASCII: it is sent to the IdP and logged)."""
    times = {
        "created_at": snapshot.created_at,
        "deadline": snapshot.deadline,
        "next_poll_at": snapshot.next_poll_at,
        "result.expires_at": snapshot.result.expires_at if snapshot.result else None,
    }
    for name, value in times.items():
        if value is not None and not math.isfinite(value):
            raise SnapshotError(
                f"snapshot.{name} is not a finite number; the snapshot was altered, so "
                "start the flow again"
            )
    try:
        identifier("user_id", snapshot.user_id)
    except InvalidInput as exc:
        raise SnapshotError(
            f"snapshot.{exc}; the snapshot was altered or is foreign, so start the flow again"
        ) from None


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Snapshot data of an older schema, upgraded step by step to :data:`SCHEMA_VERSION`.

    Raises SnapshotError for a schema written by a newer mfa_fsm (never guessed at: a
    downgrade cannot know what the new fields mean), for one too old to have a migration
    path, and for a missing or malformed schema number. ``data`` itself is not changed.
    """
    schema = data.get("schema")
    if type(schema) is not int:
        raise SnapshotError(
            f"snapshot schema {schema!r} is not a schema number; the snapshot is not one "
            "mfa_fsm wrote, so start the flow again"
        )
    if schema > SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot schema {schema} was written by a newer mfa_fsm (this one reads schema "
            f"{SCHEMA_VERSION}); run the same mfa_fsm version on every server, or start the "
            "flow again"
        )
    while schema < SCHEMA_VERSION:
        step = MIGRATIONS.get(schema)
        if step is None:
            raise SnapshotError(
                f"snapshot schema {schema} is too old for this mfa_fsm (schema "
                f"{SCHEMA_VERSION}), which has no migration from it; start the flow again"
            )
        schema += 1
        data = {**step(dict(data)), "schema": schema}
    return data


@attrs.frozen
class FlowView:
    """What a caller renders after an event: the snapshot without the provider's secrets.

    ``result`` (on completion) still carries the IdP's final token: hand it to the session
    layer, never to the page.
    """

    flow_id: str = attrs.field(repr=False)  # a bearer handle: never in a repr
    provider: str
    state: str
    version: int
    deadline: float
    choices: tuple[Choice, ...] = ()
    challenge: Challenge | None = None
    next_poll_at: float | None = None
    failure: str | None = None
    failure_detail: str | None = None
    result: Result | None = None

    @classmethod
    def of(cls, snapshot: Snapshot) -> FlowView:
        """The public part of ``snapshot``."""
        return cls(
            flow_id=snapshot.flow_id,
            provider=snapshot.provider,
            state=snapshot.state,
            version=snapshot.version,
            deadline=snapshot.deadline,
            choices=snapshot.choices,
            challenge=snapshot.challenge,
            next_poll_at=snapshot.next_poll_at,
            failure=snapshot.failure,
            failure_detail=snapshot.failure_detail,
            result=snapshot.result,
        )

    @property
    def is_final(self) -> bool:
        """Whether the flow has ended (``Completed`` or ``Failed``)."""
        return self.state in FINAL_STATES


def handed_off(snapshot: Snapshot, *, now: float) -> Snapshot:
    """What a store keeps of a ``Completed`` flow once its result is in the application's hands.

    The result keeps what a page shows (user id, display name, token expiry) and loses the
    IdP's token and cookies; the provider's private context loses every secret field (those
    kept out of its repr), which go back to their defaults. The deadline becomes ``now``, so
    a store forgets the flow one margin later (the short window in which the same browser may
    still load its final page). The version goes up by one: a store saves this with
    compare-and-set, so of two requests handing off one flow exactly one gets the result.

    Raises ResultUnavailable, and changes nothing, for a flow that has not completed or whose
    result was already handed off.
    """
    result = snapshot.result
    if snapshot.state != "Completed" or result is None or result.handed_off:
        handed = result is not None and result.handed_off
        raise ResultUnavailable(snapshot.flow_id, snapshot.state, handed_off=handed)
    context = snapshot.context
    if attrs.has(type(context)):
        secret = {}
        for field in attrs.fields(type(context)):
            if field.repr or field.default is attrs.NOTHING:
                continue
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            secret[field.name] = default
        context = attrs.evolve(context, **secret)
    result = attrs.evolve(result, token="", cookies={}, handed_off=True)
    return attrs.evolve(
        snapshot,
        result=result,
        context=context,
        deadline=min(snapshot.deadline, now),
        version=snapshot.version + 1,
    )


# -- a small typed codec for frozen attrs classes ------------------------------------------
#
# Snapshots hold only str, int, float, bool, None, tuples, dicts and nested attrs classes, so
# a checked codec fits in a screen. A stateless handler decodes and encodes a snapshot on
# every request, so each attrs class gets an encoder and a decoder generated as Python source
# once (the technique attrs and cattrs use for their own methods): one straight-line function
# per class, with the type check of every scalar field inlined. cattrs was considered: its
# default hooks coerce (``str(5)`` is accepted as a string), so it would need a strict hook
# for every scalar and its own error paths; the generated code keeps this module's checks
# and messages as they were. The bytes are msgspec's JSON: on a 2 KB snapshot it measured
# about 3x faster to read and 10x faster to write than the standard library's, and, unlike
# orjson, it keeps integers beyond 64 bits exact; the text it writes is JSON that the
# standard library reads back unchanged.

Codec = Callable[[Any], Any]
_ENCODERS: dict[type, Callable[[Any, bool], dict[str, Any]]] = {}
_DECODERS: dict[Any, Codec] = {}
_JSON_ENCODER = msgspec.json.Encoder()
_JSON_DECODER = msgspec.json.Decoder()


def _dumps(snapshot: Snapshot) -> str:
    try:
        data = {"schema": snapshot.schema, **_encode(snapshot)}
        return _JSON_ENCODER.encode(data).decode("utf-8")
    except (_NonFinite, UnicodeEncodeError):
        # msgspec writes NaN and infinities as null, and a lone surrogate has no UTF-8 form;
        # the standard library writes both as mfa_fsm always did (NaN, Infinity, the raw
        # character), and _loads reads them back the same way.
        return json.dumps(snapshot.to_dict(), separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | bytes) -> Any:
    try:
        return _JSON_DECODER.decode(text)
    except (msgspec.DecodeError, UnicodeEncodeError):
        # Strict JSON failed (or the text holds a lone surrogate, which has no UTF-8 form):
        # what _dumps wrote with the standard library (NaN, Infinity, the raw character)
        # still reads back; anything else fails here too and is refused by the caller.
        return json.loads(text)


class _NonFinite(Exception):
    """A NaN or infinite float, which msgspec's JSON would silently write as null."""


class _Malformed(Exception):
    """Raised inside the decoders; ``where`` grows as it unwinds, so the path costs nothing
    until something is actually wrong."""

    def __init__(self, problem: str, *where: str) -> None:
        self.problem = problem
        self.where: list[str] = list(where)


def _encode(value: Any, *, finite: bool = True) -> Any:
    kind = type(value)
    if kind is float:
        if finite and not -_INFINITY < value < _INFINITY:
            raise _NonFinite
        return value
    if kind in _PLAIN_TYPES:
        return value
    if kind is tuple:
        return [_encode(item, finite=finite) for item in value]
    if kind is dict:
        return {key: _encode(item, finite=finite) for key, item in value.items()}
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        encoder = _ENCODERS[kind] = _attrs_encoder(kind)
    return encoder(value, finite)


def _generated(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    """Compile one generated function; its source is only ever built from field names."""
    exec(compile("\n".join(lines), f"<mfa_fsm codec {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def _attrs_encoder(kind: type) -> Callable[[Any, bool], dict[str, Any]]:
    # Fields still at their default are left out: the decoder restores them from the class,
    # and a snapshot small enough for a cookie matters more than a self-describing one.
    namespace: dict[str, Any] = {"_encode": _encode, "_PLAIN": _PLAIN_TYPES}
    lines = ["def encode(obj, finite):", "    out = {}"]
    for index, field in enumerate(attrs.fields(kind)):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        put = f"out[{field.name!r}] = v if v.__class__ in _PLAIN else _encode(v, finite=finite)"
        lines.append(f"    v = obj.{field.name}")
        if default is attrs.NOTHING:
            lines.append(f"    {put}")
        else:
            namespace[f"_d{index}"] = default
            lines.append(f"    if v is not _d{index} and v != _d{index}:")
            lines.append(f"        {put}")
    lines.append("    return out")
    return typing.cast(
        Callable[[Any, bool], dict[str, Any]], _generated("encode", lines, namespace)
    )


def _decode(tp: Any, data: Any, where: str) -> Any:
    try:
        return _decoder(tp)(data)
    except _Malformed as exc:
        path = ".".join([where, *reversed(exc.where)])
        raise SnapshotError(
            f"{path} {exc.problem}; the snapshot was altered or is foreign"
        ) from None


def _decoder(tp: Any) -> Codec:
    known = _DECODERS.get(tp)
    if known is None:
        known = _DECODERS[tp] = _build_decoder(tp)
    return known


def _optional_arm(tp: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        (arm,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return arm
    return None


def _build_decoder(tp: Any) -> Codec:
    if attrs.has(tp):
        return _attrs_decoder(tp)
    arm = _optional_arm(tp)
    if arm is not None:
        inner = _decoder(arm)
        return lambda data: None if data is None else inner(data)
    origin = typing.get_origin(tp)
    if origin is tuple:
        item = _decoder(typing.get_args(tp)[0])

        def decode_tuple(data: Any) -> Any:
            if type(data) is not list:
                raise _Malformed("must be a list")
            return tuple([item(value) for value in data])

        return decode_tuple
    if origin is dict:
        value_decoder = _decoder(typing.get_args(tp)[1])

        def decode_dict(data: Any) -> Any:
            if type(data) is not dict:
                raise _Malformed("must be an object")
            return {key: value_decoder(value) for key, value in data.items()}

        return decode_dict
    if tp is Any:
        return lambda data: data
    return _scalar_decoder(tp)


#: Inline checks for scalar fields: ``v`` is the value read, ``n`` the field's name.
_SCALAR_CHECKS = {
    str: ["if v.__class__ is not str:", "    raise _Malformed(_WRONG, n)"],
    int: ["if v.__class__ is not int:", "    raise _Malformed(_WRONG, n)"],
    bool: ["if v.__class__ is not bool:", "    raise _Malformed(_WRONG, n)"],
    # type(), not isinstance: True is no number here; an integer is read as a float.
    float: [
        "if v.__class__ is not float:",
        "    if v.__class__ is not int:",
        "        raise _Malformed(_WRONG, n)",
        "    v = float(v)",
    ],
}


def _attrs_decoder(tp: type) -> Codec:
    hints = typing.get_type_hints(tp)
    fields = attrs.fields(tp)
    namespace: dict[str, Any] = {
        "_Malformed": _Malformed,
        "_WRONG": "has the wrong type",
        "_NAMES": frozenset(f.name for f in fields),
        "_cls": tp,
    }
    lines = [
        "def decode(data):",
        "    if data.__class__ is not dict:",
        "        raise _Malformed('must be an object')",
        "    if not _NAMES.issuperset(data):",
        "        for n in data:",
        "            if n not in _NAMES:",
        "                raise _Malformed(f'has an unknown field {n!r}')",
        "    kwargs = {}",
    ]
    for index, field in enumerate(fields):
        hint = hints[field.name]
        arm = _optional_arm(hint)
        check = _SCALAR_CHECKS.get(arm if arm is not None else hint)
        lines.append(f"    v = data.get({field.name!r}, data)")  # the dict itself: absent
        lines.append("    if v is not data:")
        if check is not None:
            body = [f"n = {field.name!r}", *check]
            if arm is not None:
                body = ["if v is not None:", *["    " + line for line in body]]
        elif hint is Any:
            body = []
        else:
            namespace[f"_f{index}"] = _decoder(hint)
            body = [
                "try:",
                f"    v = _f{index}(v)",
                "except _Malformed as exc:",
                f"    exc.where.append({field.name!r})",
                "    raise",
            ]
        lines.extend("        " + line for line in body)
        lines.append(f"        kwargs[{field.name!r}] = v")
    lines += [
        "    try:",
        "        return _cls(**kwargs)",
        "    except (TypeError, ValueError) as exc:",
        "        raise _Malformed('is incomplete or invalid') from exc",
    ]
    return typing.cast(Codec, _generated("decode", lines, namespace))


def _scalar_decoder(tp: Any) -> Codec:
    if tp not in _SCALAR_CHECKS:
        raise TypeError(f"snapshots cannot hold values of type {tp!r}")
    namespace: dict[str, Any] = {"_Malformed": _Malformed, "_WRONG": "has the wrong type"}
    lines = ["def decode(v):", *["    " + line for line in _SCALAR_CHECKS[tp]], "    return v"]
    # A scalar outside a field (a tuple's item, a dict's value) names no field of its own.
    lines = [line.replace("_Malformed(_WRONG, n)", "_Malformed(_WRONG)") for line in lines]
    return typing.cast(Codec, _generated("decode", lines, namespace))


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_INFINITY = float("inf")
