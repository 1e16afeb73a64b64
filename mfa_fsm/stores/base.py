"""The flow store interface, and the one implementation of its rules that every backend shares.

Theory of operation
-------------------
A stateless web handler keeps a flow's snapshot in a store between two requests::

    snapshot = store.load(flow_id)                       # FlowNotFound: ended, expired, unknown
    new = ...                                             # restore the flow, send it one event
    store.save(new, expected_version=snapshot.version)   # FlowConflict: another request won

``save`` is a compare-and-set on ``Snapshot.version``: it writes only while the stored
version is still the one this request loaded. Of two concurrent requests for one flow exactly
one wins; the other gets :class:`~mfa_fsm.core.errors.FlowConflict` and should reload the
flow and render its current state. A stored version never goes down, so an old snapshot
saved again (a replay, or a request that lost the race) is refused as well.

Compare-and-set alone would let both requests make their IdP calls, the loser only finding
out when it saves. So a request *claims* the flow at the version it loaded before its first
IdP call (``claim``, atomic in every backend): of the requests that loaded one version, one
gets the claim and the others :class:`~mfa_fsm.core.errors.FlowBusy` (or FlowConflict, if the
winner has already saved), so they never reach the IdP. Saving at that version ends the claim;
a step that fails releases it (``release``), and a claim whose request died expires after its
``ttl``. ``mfa_fsm.engine`` does all of this for the caller, one line per request.

A record lives until ``snapshot.deadline + margin`` (:func:`expires_at`). The margin (default
:data:`DEFAULT_MARGIN`, 300 s) keeps a flow that has just ended or timed out loadable, so its
final page can still be rendered; after that ``load`` reports it missing, and the record is
deleted without anyone having to remember to: Redis drops the key itself (its TTL), and the
memory and SQL stores purge at most :attr:`RecordStore.purge_limit` expired records after
every :attr:`RecordStore.purge_every` writes, a bounded cost piggy-backed on normal traffic.
A store that sees no writes purges nothing, so for a bound that holds without traffic run
``mfa-fsm purge STORE_URL`` (or :meth:`RecordStore.purge_expired`) from a periodic job.

:class:`FlowStore` is the interface the engine takes; any object with these six methods
will do. :class:`RecordStore` implements it once for the backends shipped here (memory, SQL,
Redis) on top of six primitive record operations, so that errors and version rules are
exactly the same whatever the backend. The same primitives back :class:`StoreLedger`, the
replay ledger of sealed client-side state (``mfa_fsm.stores.sealed``).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import attrs

from mfa_fsm.core.calls import checked, is_count, is_seconds
from mfa_fsm.core.errors import (
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    InvalidInput,
    SnapshotError,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.core.logref import LazyLogger, flow_ref
from mfa_fsm.core.plans import Plan, call, run
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.compact import pack, unpack

#: Seconds a record outlives its snapshot's deadline, so a finished flow can still be shown.
DEFAULT_MARGIN = 300.0

#: Writes between two automatic purges of a store (see :attr:`RecordStore.purge_every`).
DEFAULT_PURGE_EVERY = 64
#: The most expired records one automatic purge deletes (see :attr:`RecordStore.purge_limit`).
DEFAULT_PURGE_LIMIT = 256

log = LazyLogger("mfa_fsm")

#: The ``expected`` version a FlowConflict from ``create`` carries: no flow was expected yet.
NO_VERSION = -1

#: Where stores read the time (epoch seconds); tests pass a clock they can move.
Clock = Callable[[], float]


def expires_at(snapshot: Snapshot, margin: float = DEFAULT_MARGIN) -> float:
    """The epoch second after which a stored ``snapshot`` is gone: its deadline plus ``margin``."""
    return snapshot.deadline + margin


#: The longest flow id any store accepts: what ``identifier`` allows at start().
MAX_FLOW_ID = 255
_FLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,254}")


def check_flow_id(flow_id: object) -> str:
    """``flow_id`` if it has the form start() gives flow ids (ASCII letters, digits and
    ``._@+-``, at most 255 characters); raises before any backend sees it: InvalidInput for
    a value that is not a string at all (a programming error), FlowNotFound for a string
    that cannot name a flow (no flow has that id: a tampered or truncated URL or cookie)."""
    if not isinstance(flow_id, str):
        raise InvalidInput("flow_id", "must be a string: the flow_id of the view start() returned")
    if not _FLOW_ID.fullmatch(flow_id):
        raise FlowNotFound(flow_id)
    return flow_id


def check_snapshot(snapshot: object) -> Snapshot:
    """``snapshot`` itself if it is a :class:`Snapshot`, else InvalidInput (a store saves
    what ``Flow.snapshot()`` returns, not its JSON nor a view)."""
    if not isinstance(snapshot, Snapshot):
        raise InvalidInput("snapshot", "must be a Snapshot: save what Flow.snapshot() returns")
    return snapshot


def check_advances(flow_id: str, version: int, expected_version: int) -> None:
    """Refuse to store ``version`` over ``expected_version`` unless it is newer.

    Raises :class:`~mfa_fsm.core.errors.UsageError` before anything is written: saving a
    snapshot that did not advance would let an old snapshot overwrite the current one.
    """
    if version <= expected_version:
        raise UsageError(
            f"snapshot of flow ref {flow_ref(flow_id)} has version {version}, not above "
            f"expected_version {expected_version}: save the snapshot the flow produced after "
            "the event, with the version it was loaded at as expected_version"
        )


class FlowStore(Protocol):
    """Where snapshots wait between requests, keyed by flow id, with compare-and-set on version.

    Backend failures (a refused connection, a dropped database) propagate as the backend's
    own exception; when that happens during ``save`` the write may or may not have happened,
    so reload the flow before deciding again.
    """

    def create(self, snapshot: Snapshot) -> None:
        """Store a new flow.

        Raises FlowConflict (``expected`` is :data:`NO_VERSION`, ``actual`` the stored version)
        when a live flow already has this id; the stored flow is left as it was.
        """

    def load(self, flow_id: str) -> Snapshot:
        """The newest snapshot of ``flow_id``.

        Raises FlowNotFound when there is none (never created, deleted, or expired), and
        SnapshotError when the stored text no longer parses (written by another schema).
        """

    def save(self, snapshot: Snapshot, *, expected_version: int) -> None:
        """Replace the stored snapshot, if and only if it is still at ``expected_version``.

        Raises UsageError when ``snapshot.version`` is not above ``expected_version``,
        FlowConflict (with the stored version) when another request saved first, and
        FlowNotFound when the flow is gone; in each case nothing is changed.
        """

    def delete(self, flow_id: str) -> None:
        """Forget ``flow_id``; deleting a flow that is not there is not an error."""

    def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds, before a step's IdP calls.

        Returns the claim's id, for :meth:`release`. Raises FlowBusy when another live claim
        holds the flow, FlowConflict when it is no longer at ``version``, FlowNotFound when it
        is gone; in each case nothing is changed. A ``save`` at ``version`` ends the claim.
        """

    def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early (its step failed); a no-op if it has already ended."""


class VersionLedger(Protocol):
    """The newest version of each flow, for refusing replayed sealed client-side state.

    Sealed state (``mfa_fsm.stores.sealed``) keeps the snapshot in the client; the ledger
    keeps only a number per flow on the server, so an older token can be told apart from the
    newest one.
    """

    def current(self, flow_id: str) -> int | None:
        """The newest recorded version of ``flow_id``, or None if unknown or expired."""

    def advance(
        self, flow_id: str, *, expected_version: int | None, version: int, expires_at: float
    ) -> None:
        """Record ``version`` as the newest, if the recorded one is still ``expected_version``.

        ``expected_version=None`` records a new flow. Raises FlowConflict when another request
        advanced the flow first (or, for a new flow, when it is already recorded), FlowNotFound
        when the flow is no longer recorded, UsageError when ``version`` is not newer; in each
        case nothing is changed. The record is forgotten after ``expires_at`` (epoch seconds).
        Advancing ends any claim on the flow.
        """

    def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds; see :meth:`FlowStore.claim`."""

    def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early; a no-op if it has already ended."""


@attrs.frozen
class Record:
    """What a backend keeps per key: the version to compare on, and an opaque payload.

    The payload of a flow is its snapshot in compact form (``mfa_fsm.stores.compact``:
    bytes); records written before that form existed hold the snapshot's JSON text, and
    ledger records an empty string. A new record is never claimed: replacing a record is
    what ends its claim.
    """

    version: int
    expires_at: float
    payload: str | bytes = attrs.field(repr=False)
    #: Copied from the snapshot for operators' queries (SQL columns); empty in ledger records.
    provider: str = ""
    state: str = ""


class Records:
    """The rules every store shipped here shares, written once as plans
    (:mod:`mfa_fsm.core.plans`) over six primitive record operations: :class:`RecordStore`
    runs them blocking over blocking primitives, :class:`~mfa_fsm.stores.aio.AsyncRecordStore`
    awaits them over async ones, so that errors and version rules are exactly the same
    whatever the backend and whichever kind of caller."""

    #: After this many writes (creates and saves, flows' or a ledger's) the store deletes up
    #: to :attr:`purge_limit` expired records. Each flow writes at least once, so a purge of
    #: 256 per 64 writes keeps up with any traffic while bounding the extra work of one
    #: request. 0 turns automatic purging off (then run ``mfa-fsm purge`` from cron). Set
    #: either on the instance to change it.
    purge_every: int = DEFAULT_PURGE_EVERY
    #: The most expired records one automatic purge deletes.
    purge_limit: int = DEFAULT_PURGE_LIMIT
    #: Whether expired records linger until purged (False where the backend expires them).
    needs_purging: ClassVar[bool] = True

    def __init__(self, *, margin: float = DEFAULT_MARGIN, clock: Clock = time.time) -> None:
        if not is_seconds(margin, zero=True):
            raise UsageError("margin must not be negative: it is how long a record outlives")
        self.margin = margin
        self._clock = clock
        self._writes = 0
        self._writes_lock = threading.Lock()

    #: The backend's own exception classes; an operation that raises one raises
    #: :class:`StoreUnavailable` instead (without the backend's message: see there).
    backend_errors: ClassVar[tuple[type[Exception], ...]] = ()

    @contextlib.contextmanager
    def _backend(self, operation: str) -> Iterator[None]:
        """Turn the backend's exceptions into :class:`StoreUnavailable` for ``operation``."""
        try:
            yield
        except self.backend_errors as exc:
            # from None: drivers quote bound parameters (flow ids, snapshot bytes).
            raise StoreUnavailable(type(self).__name__, operation, type(exc).__name__) from None

    # -- the FlowStore interface, as plans ---------------------------------------------------
    # Every operation raises StoreUnavailable when the backend fails, and FlowNotFound for
    # a flow id that is not a string of the form start() makes (check_flow_id).

    def _purge_expired_plan(self, limit: int | None) -> Plan[int]:
        if limit is not None and not is_count(limit, least=1):
            raise UsageError("limit must be at least 1 (or None: every expired record)")
        with self._backend("purge"):
            purged: int = yield from call(self._purge, self._clock(), limit)
        return purged

    def _create_plan(self, snapshot: Snapshot) -> Plan[None]:
        with self._backend("create"):
            flow_id = check_flow_id(check_snapshot(snapshot).flow_id)
            yield from self._create_record(flow_id, self._record_of(snapshot))

    def _load_plan(self, flow_id: str) -> Plan[Snapshot]:
        with self._backend("load"):
            found = yield from call(self._fetch, check_flow_id(flow_id))
        if found is None:
            raise FlowNotFound(flow_id)
        snapshot = unpack(found[1])
        if snapshot.flow_id != flow_id:
            raise SnapshotError(
                f"the record stored for flow ref {flow_ref(flow_id)} holds another flow's "
                "snapshot: the store was altered; delete the record and start again"
            )
        return snapshot

    def _save_plan(self, snapshot: Snapshot, expected_version: int) -> Plan[None]:
        flow_id = check_flow_id(check_snapshot(snapshot).flow_id)
        if not is_count(expected_version, least=NO_VERSION):
            raise InvalidInput("expected_version", "must be the version the flow was loaded at")
        with self._backend("save"):
            yield from self._replace_record(flow_id, expected_version, self._record_of(snapshot))

    def _delete_plan(self, flow_id: str) -> Plan[None]:
        with self._backend("delete"):
            yield from call(self._remove, check_flow_id(flow_id))

    def _claim_plan(self, flow_id: str, version: int, ttl: float) -> Plan[str]:
        if not is_seconds(ttl):
            raise UsageError("a claim's ttl must be positive: it is how long the claim lasts")
        with self._backend("claim"):
            flow_id = check_flow_id(flow_id)
            claim = secrets.token_hex(8)
            if not (yield from call(self._claim, flow_id, version, claim, self._clock() + ttl)):
                # Read back only to say why (as for save); a claim that ended meanwhile makes
                # this say "busy" where a retry would succeed, which is the advice given anyway.
                actual = yield from self._version_of(flow_id)
                if actual is None:
                    raise FlowNotFound(flow_id)
                if actual != version:
                    raise FlowConflict(flow_id, version, actual)
                raise FlowBusy(flow_id, version)
        return claim

    def _release_plan(self, flow_id: str, claim: str) -> Plan[None]:
        with self._backend("release"):
            yield from call(self._release, check_flow_id(flow_id), claim)

    # -- the rules, shared with the ledgers ------------------------------------------------

    def _record_of(self, snapshot: Snapshot) -> Record:
        return Record(
            version=snapshot.version,
            expires_at=expires_at(snapshot, self.margin),
            payload=pack(snapshot),
            # Interned: a store in memory then holds one copy of each name, not one per flow.
            provider=sys.intern(snapshot.provider),
            state=sys.intern(snapshot.state),
        )

    def _create_record(self, key: str, record: Record) -> Plan[None]:
        if not (yield from call(self._insert, key, record)):
            raise FlowConflict(key, NO_VERSION, (yield from self._version_of(key)))
        yield from self._wrote()

    def _replace_record(self, key: str, expected_version: int, record: Record) -> Plan[None]:
        check_advances(key, record.version, expected_version)
        if not (yield from call(self._swap, key, expected_version, record)):
            # Read back only to say why; versions never go down, so what is read here is at
            # least the version that beat us (or nothing, if the flow has gone meanwhile).
            actual = yield from self._version_of(key)
            if actual is None:
                raise FlowNotFound(key)
            raise FlowConflict(key, expected_version, actual)
        yield from self._wrote()

    def _wrote(self) -> Plan[None]:
        """Count one write; every ``purge_every`` writes, purge a bounded batch."""
        if not self.needs_purging or self.purge_every <= 0:
            return
        with self._writes_lock:
            self._writes += 1
            if self._writes < self.purge_every:
                return
            self._writes = 0
        try:
            purged = yield from call(self._purge, self._clock(), self.purge_limit)
        except Exception as exc:
            # The caller's write has succeeded; failing it now would make the caller think
            # otherwise. The next purge (or the periodic job) deletes what this one did not.
            log.warning("mfa_fsm.purge_failed", error=type(exc).__name__)
            return
        if purged:
            log.info("mfa_fsm.purged", records=purged)

    def _version_of(self, key: str) -> Plan[int | None]:
        found = yield from call(self._fetch, key)
        return None if found is None else found[0]

    # The six primitives (and _purge) each backend defines, blocking (RecordStore) or async
    # (AsyncRecordStore); see RecordStore for their contracts.
    _insert: Callable[..., Any]
    _fetch: Callable[..., Any]
    _swap: Callable[..., Any]
    _remove: Callable[..., Any]
    _claim: Callable[..., Any]
    _release: Callable[..., Any]
    _purge: Callable[..., Any]


class RecordStore(Records, ABC):
    """A :class:`FlowStore` built on six primitive operations that a backend implements.

    The primitives must each be atomic and must treat a record past its ``expires_at`` as
    absent. Everything else (version rules, error types and messages, expiry arithmetic,
    automatic purging) lives in :class:`Records` once, shared with the async stores.
    """

    @checked
    def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired records now, at most ``limit`` of them (all when None); returns how
        many were deleted. Live records are never touched. For a periodic job, or tests.
        Raises :class:`StoreUnavailable` when the backend fails."""
        return run(self._purge_expired_plan(limit))

    @checked
    def create(self, snapshot: Snapshot) -> None:
        """Store a new flow; see :meth:`FlowStore.create` for what is refused."""
        run(self._create_plan(snapshot))

    @checked
    def load(self, flow_id: str) -> Snapshot:
        """The newest snapshot of ``flow_id``; see :meth:`FlowStore.load` for what is raised.

        Raises SnapshotError when the stored snapshot does not parse or names another flow
        id than the key it is stored under (a record altered or copied in the store)."""
        return run(self._load_plan(flow_id))

    @checked
    def save(self, snapshot: Snapshot, *, expected_version: int) -> None:
        """Compare-and-set the stored snapshot; see :meth:`FlowStore.save` for what is refused."""
        run(self._save_plan(snapshot, expected_version))

    @checked
    def delete(self, flow_id: str) -> None:
        """Forget ``flow_id``; deleting a flow that is not there is not an error."""
        run(self._delete_plan(flow_id))

    @checked
    def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds; see :meth:`FlowStore.claim`.

        Works on any key of the store, so :class:`StoreLedger` claims with it too.
        """
        return run(self._claim_plan(flow_id, version, ttl))

    @checked
    def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early; a no-op if it has already ended."""
        run(self._release_plan(flow_id, claim))

    # -- the primitives a backend implements; each one atomic ----------------------------

    @abstractmethod
    def _insert(self, key: str, record: Record) -> bool:
        """Store ``record`` unless a live record has ``key``; if one has, change nothing: False."""

    @abstractmethod
    def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        """The live record's ``(version, payload)``, or None if missing or expired."""

    @abstractmethod
    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        """Replace the live record iff its version is ``expected_version``; False otherwise."""

    @abstractmethod
    def _remove(self, key: str) -> None:
        """Drop the record, if any."""

    @abstractmethod
    def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        """Mark the live record claimed by ``claim`` until ``until`` (epoch seconds), iff it
        is at ``version`` and holds no claim that is still live; False otherwise."""

    @abstractmethod
    def _release(self, key: str, claim: str) -> None:
        """Clear the record's claim iff it is ``claim``; otherwise change nothing."""

    @abstractmethod
    def _purge(self, now: float, limit: int | None) -> int:
        """Delete up to ``limit`` (None: all) records expired at ``now``; how many it deleted.
        Must never delete a live record, even one written concurrently under the same key."""


class LedgerPlans:
    """The plans of a replay ledger kept in a store's records, shared by :class:`StoreLedger`
    and :class:`~mfa_fsm.stores.aio.AsyncStoreLedger`."""

    def __init__(self, records: Records) -> None:
        self._records = records

    def _current_plan(self, flow_id: str) -> Plan[int | None]:
        with self._records._backend("ledger read"):
            version: int | None = yield from self._records._version_of(check_flow_id(flow_id))
        return version

    def _advance_plan(
        self, flow_id: str, expected_version: int | None, version: int, expires_at: float
    ) -> Plan[None]:
        record = Record(version=version, expires_at=expires_at, payload="")
        check_flow_id(flow_id)
        with self._records._backend("ledger write"):
            if expected_version is None:
                yield from self._records._create_record(flow_id, record)
            else:
                yield from self._records._replace_record(flow_id, expected_version, record)


class StoreLedger(LedgerPlans):
    """A :class:`VersionLedger` kept in any :class:`RecordStore` (memory, SQL or Redis).

    It writes one small record per flow (a version, no snapshot), so give it a namespace of
    its own: ``StoreLedger(SqlStore(engine, table="mfa_fsm_ledger"))`` or
    ``StoreLedger(RedisStore(client, prefix="mfa_fsm:ledger:"))``. Sharing the flows' table
    or prefix would make a flow id's ledger record and its stored snapshot overwrite each
    other.
    """

    def __init__(self, records: RecordStore) -> None:
        super().__init__(records)
        self._store = records

    def current(self, flow_id: str) -> int | None:
        """The newest recorded version of ``flow_id``, or None if unknown or expired."""
        return run(self._current_plan(flow_id))

    def advance(
        self, flow_id: str, *, expected_version: int | None, version: int, expires_at: float
    ) -> None:
        """Compare-and-set the recorded version; see :meth:`VersionLedger.advance`."""
        run(self._advance_plan(flow_id, expected_version, version, expires_at))

    def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds; see :meth:`FlowStore.claim`."""
        return self._store.claim(flow_id, version, ttl=ttl)

    def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early; a no-op if it has already ended."""
        self._store.release(flow_id, claim)
