"""A flow store in this process's memory: for tests, the demo, and single-process servers.

Flows are lost when the process exits and are not shared between worker processes; use
``SqlStore`` or ``RedisStore`` behind more than one process. Safe to share between threads.
"""

from __future__ import annotations

import itertools
import threading
import time

from mfa_fsm.core.calls import checked
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record, RecordStore


class MemoryStore(RecordStore):
    """Snapshots in a dict behind a lock; see :class:`~mfa_fsm.stores.base.FlowStore`.

    Expired records are invisible at once, dropped when next touched, and purged in bounded
    batches every ``purge_every`` writes (see :class:`~mfa_fsm.stores.base.RecordStore`), so
    abandoned flows do not pile up.
    """

    @checked
    def __init__(self, *, margin: float = DEFAULT_MARGIN, clock: Clock = time.time) -> None:
        super().__init__(margin=margin, clock=clock)
        self._records: dict[str, Record] = {}
        #: key -> (claim id, claimed until); every write of a record drops its entry.
        self._claims: dict[str, tuple[str, float]] = {}
        # One lock for everything: each primitive is a few dict operations, and holding it
        # across check and write is what makes compare-and-set atomic.
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> Record | None:
        record = self._records.get(key)
        if record is None or now < record.expires_at:
            return record
        del self._records[key]
        self._claims.pop(key, None)
        return None

    def _put(self, key: str, record: Record) -> None:
        self._records[key] = record
        self._claims.pop(key, None)

    def _purge(self, now: float, limit: int | None) -> int:
        with self._lock:
            # A scan, not an index by expiry: it runs once per purge_every writes, stops at
            # ``limit``, and a dict of the flows of one process is small enough to scan.
            expired = (key for key, record in self._records.items() if now >= record.expires_at)
            batch = list(itertools.islice(expired, limit))
            for key in batch:
                del self._records[key]
                self._claims.pop(key, None)
            return len(batch)

    def _insert(self, key: str, record: Record) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._put(key, record)
            return True

    def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        with self._lock:
            record = self._live(key, self._clock())
            return None if record is None else (record.version, record.payload)

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        with self._lock:
            current = self._live(key, self._clock())
            if current is None or current.version != expected_version:
                return False
            self._put(key, record)
            return True

    def _remove(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)
            self._claims.pop(key, None)

    def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        with self._lock:
            now = self._clock()
            current = self._live(key, now)
            if current is None or current.version != version:
                return False
            held = self._claims.get(key)
            if held is not None and now < held[1]:
                return False
            self._claims[key] = (claim, until)
            return True

    def _release(self, key: str, claim: str) -> None:
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[0] == claim:
                del self._claims[key]
