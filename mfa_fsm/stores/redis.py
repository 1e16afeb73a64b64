"""A flow store in Redis: one key per flow, expiring on its own.

Each flow is one string key, ``prefix + flow_id``, holding ``"<version>\\n<snapshot JSON>"``
with a TTL that ends at the snapshot's deadline plus the margin, so Redis itself forgets
finished and abandoned flows. Every operation touches exactly one key, so the store works
unchanged on Redis Cluster:

- ``create`` is ``SET key value NX PX ttl``: it writes only if the key is absent.
- ``save`` runs a small Lua script (:data:`SWAP_SCRIPT`, sent as EVALSHA with an EVAL
  fallback) that reads the stored version and, only if it is the expected one, sets the new
  value and TTL. Redis runs a script without interleaving any other command, so no other
  client can write between the check and the set.
- ``load`` is ``GET``; ``delete`` is ``DEL``.

Requires the ``redis`` extra (``pip install 'mfa_fsm[redis]'``). Connection errors propagate
as ``redis`` exceptions; a ``save`` cut off that way may or may not have been applied.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis

from mfa_fsm.core.errors import SnapshotError
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record, RecordStore

#: Compare-and-set of one flow's key. KEYS[1] the key; ARGV: expected version, new value, TTL
#: in ms. Returns 1 when it wrote, 0 when the key is missing or at another version. Versions
#: are compared as decimal strings, which is exact where Lua's numbers (doubles) might not be.
SWAP_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.match(current, '^(%d+)\\n') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class RedisStore(RecordStore):
    """Snapshots in Redis, one key per flow; see :class:`~mfa_fsm.stores.base.FlowStore`.

    ``client`` is the application's ``redis.Redis`` (``decode_responses`` either way). The
    ``clock`` only turns the absolute expiry into a TTL; Redis enforces it.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "mfa_fsm:flow:",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(margin=margin, clock=clock)
        self.client = client
        self.prefix = prefix
        self._swap_script = client.register_script(SWAP_SCRIPT)

    def _ttl_ms(self, record: Record) -> int:
        # Redis refuses a TTL of 0; a record already past its expiry is stored for 1 ms,
        # which is as good as not at all and keeps create/save free of a special case.
        return max(1, math.ceil((record.expires_at - self._clock()) * 1000))

    @staticmethod
    def _value(record: Record) -> str:
        return f"{record.version}\n{record.payload}"

    def _insert(self, key: str, record: Record) -> bool:
        written = self.client.set(
            self.prefix + key, self._value(record), nx=True, px=self._ttl_ms(record)
        )
        return bool(written)

    def _fetch(self, key: str) -> tuple[int, str] | None:
        raw: Any = self.client.get(self.prefix + key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        head, newline, payload = text.partition("\n")
        if not newline or not head.isdigit():
            raise SnapshotError(
                f"Redis key {self.prefix + key!r} does not hold an mfa_fsm record; is another "
                "application using the same key prefix?"
            )
        return int(head), payload

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        written = self._swap_script(
            keys=[self.prefix + key],
            args=[str(expected_version), self._value(record), self._ttl_ms(record)],
        )
        return int(written) == 1

    def _remove(self, key: str) -> None:
        self.client.delete(self.prefix + key)
