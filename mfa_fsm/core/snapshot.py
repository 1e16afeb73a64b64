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

import math
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Union

import attrs

from mfa_fsm.core.errors import InvalidInput, ResultUnavailable, SnapshotError
from mfa_fsm.core.inputs import identifier

if TYPE_CHECKING:  # imported on first use (see "The codec is built on first use" below)
    import cattrs
    import msgspec

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
#: ``unavailable``: the IdP offered only factors that cannot be used here (not enrolled, or a
#: FIDO2/U2F key, which needs the browser's WebAuthn); ``failure_detail`` says which.
FAILURE_REASONS = frozenset(
    {"rejected", "denied", "expired", "locked", "cancelled", "idp_error", "unavailable"}
)


@attrs.frozen
class Choice:
    """An authenticator (Entrust), mechanism (CyberArk) or device capability (Duo) the user
    may pick. All text is the IdP's, for display; none of it is a secret.
    """

    #: what ``select_second_factor(factor=...)`` takes: the IdP's own id (Entrust's
    #: authenticator type such as ``OTP``; CyberArk's opaque ``MechanismId``; Duo's
    #: ``<capability>:<device id>`` or ``passcode``)
    id: str
    #: a provider-independent family: ``otp``, ``token``, ``push``, ``kba``, ``grid``,
    #: ``password``, ``call``, ``enroll``, ...
    kind: str
    #: a label for the button, e.g. ``"SMS... XXX-6789"``
    label: str
    #: false for a factor mfa_fsm cannot drive (shown, never offered as a button)
    supported: bool = True
    #: how a one-time code can be sent (``"SMS"``, ``"EMAIL"``, ``"VOICE"``), in the IdP's
    #: order; empty when the factor sends nothing
    deliveries: tuple[str, ...] = ()
    #: the delivery used when ``select_second_factor`` names none
    default_delivery: str | None = None
    #: a masked destination or note to show beside the label (``"XXX-6789"``,
    #: ``"***@example.com"``, ``"locked"``, Duo's enrolment URL), or None
    detail: str | None = None


@attrs.frozen
class Challenge:
    """What the user must see to answer the running challenge. All text is the IdP's, for
    display; none of it is a secret."""

    #: the :attr:`Choice.id` of the factor being answered (or the first factor's name)
    factor: str
    #: the factor's family, as :attr:`Choice.kind` (plus ``external``: confirmed by the
    #: application, nothing to type)
    kind: str
    #: what to ask the user, e.g. ``"Type the code sent by SMS"``
    prompt: str
    #: how the code was sent (``"SMS"``, ``"EMAIL"``, ``"VOICE"``), or None
    delivery: str | None = None
    #: knowledge-based questions, in the order their answers are due
    #: (``submit_response(answers=[...])``); empty for any other kind
    questions: tuple[str, ...] = ()
    #: grid card cells to read, A1-style (column letter, row from 1: ``("A1", "C4")``), in
    #: the order their values are due; empty for any other kind
    cells: tuple[str, ...] = ()
    #: the number a push shows, which the user must pick on the device (number matching)
    number_to_match: str | None = None
    #: how many wrong answers the IdP still allows before it locks the factor, when it says
    #: (a count, not a time); None when it does not
    attempts_left: int | None = None
    #: whether the page offers a field for a typed code (false for a push or call waiting
    #: for the device)
    accepts_code: bool = True
    #: whether the last answer was wrong (the page says "try again")
    rejected: bool = False
    #: when ``resend`` (a new code or push to the same factor) may be sent, in epoch seconds
    #: (UTC); ``None`` when this challenge offers no resend (nothing was sent: a typed
    #: password, an authenticator app, a QR code)
    resend_at: int | None = None


@attrs.frozen
class Result:
    """What a completed flow yields: the IdP's final token and, where the IdP sets them, cookies."""

    #: the user as the IdP names them (CyberArk's user id, not the typed login name)
    user_id: str
    #: the user's name for display, when the IdP gives one
    display_name: str | None = None
    #: the IdP's final token (Entrust's ``token``, CyberArk's ``Token``); a secret
    token: str = attrs.field(default="", repr=False)
    #: when ``token`` expires, in epoch seconds (UTC), when the IdP says
    expires_at: float | None = None
    #: cookie name -> value the IdP set for the session (CyberArk ``.ASPXAUTH``); secrets
    cookies: dict[str, str] = attrs.field(factory=dict, repr=False)
    #: True once the result was handed to the application (``Engine.hand_off``): ``token``
    #: and ``cookies`` are then erased, and only what a page shows is left.
    handed_off: bool = False


@attrs.frozen
class Snapshot:
    """An immutable, JSON-serialisable picture of one flow between two requests.

    ``version`` counts the steps the flow has taken (0 after ``start``); stores
    compare-and-set on it. ``created_at`` is when the flow started and ``deadline`` the hard
    limit of the current state, both in epoch seconds (UTC, as ``time.time()``): any event
    after the deadline ends the flow ``Failed(expired)``. ``next_poll_at`` (epoch seconds)
    is set in ``OobPending`` only: the earliest time a ``poll`` asks the IdP again.
    ``failure`` is one of :data:`FAILURE_REASONS` in ``Failed`` and ``failure_detail`` the
    IdP's wording, for display. ``schema`` is the snapshot format (:data:`SCHEMA_VERSION`).
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
        return {"schema": self.schema, **_encode(self)}

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

    ``version`` counts the flow's steps; ``deadline`` is the hard limit of the current state
    and ``next_poll_at`` (``OobPending`` only) the earliest next poll, both in epoch seconds
    (UTC, as ``time.time()``): show ``deadline - time.time()`` as the time left.
    ``choices``, ``challenge``, ``failure`` and ``failure_detail`` are as on
    :class:`Snapshot`. ``result`` (on completion) still carries the IdP's final token: hand
    it to the session layer, never to the page.
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


# -- the codec: cattrs hooks, made strict ---------------------------------------------------
#
# cattrs turns the frozen attrs classes into plain data and back (one generated function per
# class, made once). Its default hooks coerce (``"1"`` for an int, ``1`` for a bool, a float
# for a str), so every scalar has a strict hook here, and lists, objects and attrs classes
# check their JSON shape first; a refusal is a SnapshotError naming the field's path. The
# bytes are msgspec's JSON: on a 2 KB snapshot it measured about 3x faster to read and 10x
# faster to write than the standard library's, and, unlike orjson, it keeps integers beyond
# 64 bits exact; the text it writes is JSON that the standard library reads back unchanged.
# cattrs.preconf.msgspec's converter is not used: its speed-up is handing attrs classes to
# msgspec whole, which writes the default fields too (the stored JSON would change), and its
# hooks coerce as well (``"1"`` is read as ``1`` for an ``int | None``: checked, cattrs 26.2).
#
# The codec is built on first use, not at import: cattrs and msgspec are about a quarter of
# what an Entrust-only handler imports (serverless handlers pay every import on each cold
# start). Two threads racing to the first use each
# build one; both are the same, and the last one kept is used from then on.

_JSON: tuple[msgspec.json.Encoder, msgspec.json.Decoder[Any]] | None = None


def _json() -> tuple[msgspec.json.Encoder, msgspec.json.Decoder[Any]]:
    global _JSON  # noqa: PLW0603 - built once, on first use
    if _JSON is None:
        import msgspec  # noqa: PLC0415 - loaded with the codec, on first use

        _JSON = (msgspec.json.Encoder(), msgspec.json.Decoder())
    return _JSON


_WRONG = "has the wrong type"


class _Malformed(Exception):
    """A value of the wrong JSON shape, raised by the strict hooks."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _strict(kind: type) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        # type(), not isinstance: True is no int here.
        if value.__class__ is not kind:
            raise _Malformed(_WRONG)
        return value

    return structure


def _structure_float(value: Any, _: Any) -> float:
    if value.__class__ is float:
        return value
    if value.__class__ is not int:  # an integer is read as a float; True is not a number
        raise _Malformed(_WRONG)
    try:
        return float(value)
    except OverflowError:  # an integer past float's range (1e308): no time is that far
        raise _Malformed(_WRONG) from None


def _is_optional(tp: Any) -> bool:
    args = typing.get_args(tp)
    return (
        typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 2 and type(None) in args
    )


def _optional_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    (arm,) = [a for a in typing.get_args(tp) if a is not type(None)]
    inner = converter.get_structure_hook(arm)
    return lambda value, _: None if value is None else inner(value, arm)


def _tuple_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    item_type = typing.get_args(tp)[0]
    item = converter.get_structure_hook(item_type)

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if value.__class__ is not list:
            raise _Malformed("must be a list")
        return tuple([item(v, item_type) for v in value])

    return structure


def _dict_hook(tp: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    value_type = typing.get_args(tp)[1]
    item = converter.get_structure_hook(value_type)

    def structure(value: Any, _: Any) -> dict[str, Any]:
        if value.__class__ is not dict or any(k.__class__ is not str for k in value):
            raise _Malformed("must be an object")
        return {k: item(v, value_type) for k, v in value.items()}

    return structure


def _attrs_hook(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    import cattrs.gen  # noqa: PLC0415 - loaded with the codec, on first use

    inner: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(cls, converter)

    def structure(value: Any, _: Any) -> Any:
        if value.__class__ is not dict:
            raise _Malformed("must be an object")
        return inner(value, cls)

    return structure


class _Unsupported(TypeError):
    """A context class declares a field of a type snapshots do not hold (a bug, not data)."""


def _unsupported(tp: Any) -> Callable[[Any, Any], Any]:
    raise _Unsupported(f"snapshots cannot hold values of type {tp!r}")


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _is_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict


def _converter(*, detailed: bool = False) -> cattrs.Converter:
    # Fields still at their default are left out: the decoder restores them from the class,
    # and a snapshot small enough for a cookie matters more than a self-describing one.
    import cattrs  # noqa: PLC0415 - loaded with the codec, on first use

    converter = cattrs.Converter(
        omit_if_default=True,
        forbid_extra_keys=True,
        detailed_validation=detailed,
    )
    # Only the types a snapshot holds (the hooks below; Any passes through): a context field
    # of any other type (a list, a set) is a programming error, raised when first decoded.
    # Registered first, so each hook below takes precedence over it.
    converter.register_structure_hook_factory(lambda tp: tp is not Any, _unsupported)
    for kind in (str, int, bool):
        converter.register_structure_hook(kind, _strict(kind))
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook_factory(_is_optional, _optional_hook)
    converter.register_structure_hook_factory(_is_tuple, _tuple_hook)
    converter.register_structure_hook_factory(_is_dict, _dict_hook)
    converter.register_structure_hook_factory(attrs.has, _attrs_hook)
    return converter


#: Reads and writes every snapshot. Without cattrs' detailed validation its generated code
#: is a straight line per class (about 20% faster to read); a snapshot it refuses is read
#: again by _EXPLAINER, whose errors carry each field's path, to say what is wrong. Both are
#: built on first use (_structurer, _explainer).
_CONVERTER: cattrs.Converter | None = None
_EXPLAINER: cattrs.Converter | None = None


def _structurer() -> cattrs.Converter:
    global _CONVERTER  # noqa: PLW0603 - built once, on first use
    if _CONVERTER is None:
        _CONVERTER = _converter()
    return _CONVERTER


def _explainer() -> cattrs.Converter:
    global _EXPLAINER  # noqa: PLW0603 - built once, on first use
    if _EXPLAINER is None:
        _EXPLAINER = _converter(detailed=True)
    return _EXPLAINER


def _encode(value: Any) -> Any:
    return (_CONVERTER or _structurer()).unstructure(value)


def _dumps(snapshot: Snapshot) -> str:
    data = {"schema": snapshot.schema, **_encode(snapshot)}
    try:
        text = (_JSON or _json())[0].encode(data).decode("utf-8")
    except UnicodeEncodeError:
        text = None
    # msgspec writes NaN and infinities as null (only then can a null be new), and a lone
    # surrogate has no UTF-8 form; the standard library writes both as mfa_fsm always did
    # (NaN, Infinity, the raw character), and _loads reads them back the same way.
    if text is None or ("null" in text and _has_non_finite(data)):
        import json  # noqa: PLC0415 - only for these rare values

        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text


def _has_non_finite(data: Any) -> bool:
    if type(data) is float:
        return not math.isfinite(data)
    if type(data) is dict:
        return any(_has_non_finite(v) for v in data.values())
    if type(data) is list:
        return any(_has_non_finite(v) for v in data)
    return False


def _loads(text: str | bytes) -> Any:
    try:
        return (_JSON or _json())[1].decode(text)
    except (_msgspec_decode_error(), UnicodeEncodeError):  # evaluated only on an error
        # Strict JSON failed (or the text holds a lone surrogate, which has no UTF-8 form):
        # what _dumps wrote with the standard library (NaN, Infinity, the raw character)
        # still reads back; anything else fails here too and is refused by the caller.
        import json  # noqa: PLC0415 - only for these rare texts

        return json.loads(text)


def _msgspec_decode_error() -> type[Exception]:
    import msgspec  # noqa: PLC0415 - loaded by then: _loads built the decoder

    return msgspec.DecodeError


def _decode(tp: Any, data: Any, where: str) -> Any:
    try:
        return (_CONVERTER or _structurer()).structure(data, tp)
    except _refusals() as exc:  # an except clause's types are evaluated only on an error
        if isinstance(exc, _Unsupported):
            raise
        error: BaseException = exc
    try:
        # Read again, keeping each field's path, to say what is wrong and where.
        (_EXPLAINER or _explainer()).structure(data, tp)
    except _refusals() as exc:
        error = exc
    path, problem = _first_problem(error, [where])
    raise SnapshotError(
        f"{'.'.join(path)} {problem}; the snapshot was altered or is foreign"
    ) from None


def _refusals() -> tuple[type[BaseException], ...]:
    """What cattrs and the hooks raise for data they refuse (TypeError, ValueError: the class
    refused the values). Asked only after a converter raised, so cattrs is loaded by then."""
    import cattrs  # noqa: PLC0415

    return (
        _Malformed,
        cattrs.BaseValidationError,
        cattrs.ForbiddenExtraKeysError,
        KeyError,
        TypeError,
        ValueError,
    )


def _first_problem(exc: BaseException, path: list[str]) -> tuple[list[str], str]:
    """The path (field names, no list indexes) and the problem of the first refusal."""
    import cattrs  # noqa: PLC0415 - loaded by then: this reads a cattrs refusal

    if isinstance(exc, _Malformed):
        return path, exc.problem
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return path, f"has an unknown field {sorted(exc.extra_fields, key=str)[0]!r}"
    if isinstance(exc, cattrs.ClassValidationError):
        # An unknown field is named first, as the reader checks names before values.
        extra = [e for e in exc.exceptions if isinstance(e, cattrs.ForbiddenExtraKeysError)]
        for sub in extra or exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", ()) if hasattr(n, "name")]
            if isinstance(sub, KeyError) or not notes:  # a required field is missing
                return _first_problem(sub, path) if not notes else (path, _INCOMPLETE)
            return _first_problem(sub, [*path, notes[0].name])
    if isinstance(exc, cattrs.IterableValidationError):
        for sub in exc.exceptions:
            return _first_problem(sub, path)
    # The class itself refused the values (a missing field, an attrs validator).
    return path, _INCOMPLETE


_INCOMPLETE = "is incomplete or invalid"
