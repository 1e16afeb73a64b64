"""The snapshot: everything the next request needs to continue a flow, as an immutable value.

A snapshot round-trips exactly through JSON (``Snapshot.from_json(s.to_json()) == s``). The
public part (state, choices, challenge, result) is what a page renders; the provider's private
part (``context``: tokens, session ids, cookies) is never shown in a repr. ``from_json``
checks every field's type, so a snapshot that was edited by hand, truncated or written by
another schema is refused with :class:`~mfa_fsm.core.errors.SnapshotError` instead of
producing a half-valid flow.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Union

import attrs

from mfa_fsm.core.errors import SnapshotError

#: Written into every snapshot; ``from_json`` refuses any other value (see ``migrate``).
SCHEMA_VERSION = 1

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


@attrs.frozen
class Snapshot:
    """An immutable, JSON-serialisable picture of one flow between two requests.

    ``version`` counts the steps the flow has taken; stores compare-and-set on it.
    ``deadline`` (epoch seconds) is the hard limit of the current state: any event after it
    ends the flow ``Failed(expired)``. ``next_poll_at`` is set in ``OobPending`` only.
    """

    provider: str
    flow_id: str
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
        data: dict[str, Any] = _encode(self)
        return data

    def to_json(self) -> str:
        """The snapshot as compact JSON text; ``from_json`` gives back an equal snapshot."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        """Rebuild a snapshot from ``to_dict`` data; refuses anything else with SnapshotError."""
        if not isinstance(data, dict):
            raise SnapshotError("a snapshot must be a JSON object; pass what to_json() returned")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise SnapshotError(
                f"snapshot schema {schema!r} is not {SCHEMA_VERSION}; it was written by another "
                "version of mfa_fsm, so start the flow again"
            )
        provider = data.get("provider")
        context_class = cls.contexts.get(provider) if isinstance(provider, str) else None
        if context_class is None:
            raise SnapshotError(
                f"snapshot names unknown provider {provider!r}; import the provider's flow module"
            )
        if data.get("state") not in STATES:
            raise SnapshotError(f"snapshot names unknown state {data.get('state')!r}")
        snapshot = _decode(cls, data, "snapshot", {"context": context_class})
        if snapshot.failure is not None and snapshot.failure not in FAILURE_REASONS:
            raise SnapshotError(f"snapshot names unknown failure reason {snapshot.failure!r}")
        if snapshot.version < 0:
            raise SnapshotError("snapshot version must not be negative")
        return typing.cast(Snapshot, snapshot)

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        """Parse ``to_json`` output; refuses malformed or foreign text with SnapshotError."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise SnapshotError(
                "snapshot is not valid JSON (truncated or altered?); start the flow again"
            ) from exc
        return cls.from_dict(data)


@attrs.frozen
class FlowView:
    """What a caller renders after an event: the snapshot without the provider's secrets.

    ``result`` (on completion) still carries the IdP's final token: hand it to the session
    layer, never to the page.
    """

    flow_id: str
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


# -- a small typed codec for frozen attrs classes ------------------------------------------
#
# Snapshots hold only str, int, float, bool, None, tuples, str->str dicts and nested attrs
# classes, so a checked codec fits in a screen and needs no extra dependency.


def _encode(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _encode(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    known = _FIELD_TYPES.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in attrs.fields(cls)}
    return known


def _decode(tp: Any, data: Any, where: str, overrides: dict[str, type] | None = None) -> Any:
    if attrs.has(tp):
        return _decode_attrs(tp, data, where, overrides or {})
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = typing.get_args(tp)
        if data is None and type(None) in arms:
            return None
        (arm,) = [a for a in arms if a is not type(None)]
        return _decode(arm, data, where)
    if origin is tuple:
        if not isinstance(data, list):
            raise SnapshotError(f"{where} must be a list")
        item_type = typing.get_args(tp)[0]
        return tuple(_decode(item_type, item, f"{where}[]") for item in data)
    if origin is dict:
        if not isinstance(data, dict):
            raise SnapshotError(f"{where} must be an object")
        value_type = typing.get_args(tp)[1]
        return {key: _decode(value_type, item, f"{where}.{key}") for key, item in data.items()}
    check = _SCALARS.get(tp)
    if check is None or not check(data):
        raise SnapshotError(f"{where} has the wrong type")
    return float(data) if tp is float else data


def _decode_attrs(tp: type, data: Any, where: str, overrides: dict[str, type]) -> Any:
    if not isinstance(data, dict):
        raise SnapshotError(f"{where} must be an object")
    fields = _field_types(tp)
    unknown = data.keys() - fields.keys()
    if unknown:
        raise SnapshotError(f"{where} has unknown fields {sorted(unknown)}")
    kwargs = {
        name: _decode(overrides.get(name, field_type), data[name], f"{where}.{name}")
        for name, field_type in fields.items()
        if name in data
    }
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{where} is incomplete or invalid") from exc


_SCALARS: dict[Any, Callable[[Any], bool]] = {
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
