"""A flow store in Redis: one key per flow, expiring on its own.

Each flow is one string key, ``prefix + flow_id``, holding ``"<version>\\n<snapshot>"``, the
snapshot in compact form (``mfa_fsm.stores.compact``: binary; a record written before that
holds its JSON text, and still loads),
with a TTL that ends at the snapshot's deadline plus the margin, so Redis itself forgets
finished and abandoned flows. While a request claims the flow, the first line also names the
claim: ``"<version> <claimed until, epoch ms> <claim id>\\n<snapshot>"``. Every operation
touches exactly one key, so the store works unchanged on Redis Cluster:

- ``create`` is ``SET key value NX PX ttl``: it writes only if the key is absent.
- ``save`` runs a small Lua script (:data:`SWAP_SCRIPT`, sent as EVALSHA with an EVAL
  fallback) that reads the stored version and, only if it is the expected one, sets the new
  value and TTL. Redis runs a script without interleaving any other command, so no other
  client can write between the check and the set. The new value names no claim, so the same
  write ends the claim.
- ``claim`` and ``release`` are scripts too (:data:`CLAIM_SCRIPT`, :data:`RELEASE_SCRIPT`):
  they rewrite the first line, keeping the payload and the TTL (``KEEPTTL``, Redis 6+).
- ``load`` is ``GET``; ``delete`` is ``DEL``.

The claim lives inside the flow's key rather than in a second key: a second key would have to
share the flow key's Cluster slot (a ``{hash tag}``, which changes every flow's key name), would
need its own expiry, and every script would touch two keys. Inside the key, the claim dies
with the flow, and the swap that saves the next version cannot leave one behind. The price is
that a claim or release rewrites the value (a few KiB, inside Redis, without a round trip for
it), and that a claimed value is unreadable to an mfa_fsm from before claims: upgrade every
worker together. Claim expiry is judged by the store's ``clock``
(passed to the script), like the SQL store's; the TTL of the key is Redis's.

Requires the ``redis`` extra (``pip install 'mfa_fsm[redis]'``). Connection errors propagate
as ``redis`` exceptions; a ``save`` cut off that way may or may not have been applied.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
import redis.cluster
from redis.client import NEVER_DECODE

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import SnapshotError, UsageError
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record, RecordStore

#: Compare-and-set of one flow's key. KEYS[1] the key; ARGV: expected version, new value, TTL
#: in ms. Returns 1 when it wrote, 0 when the key is missing or at another version. Versions
#: are compared as decimal strings, which is exact where Lua's numbers (doubles) might not be.
SWAP_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.match(current, '^(%d+)[ \\n]') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

#: Claim one flow's key. ARGV: version, claim id, now and claimed-until in epoch ms. Returns 1
#: when it claimed, 0 when the key is missing, at another version, or claimed until after now.
CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local cut = string.find(current, '\\n', 1, true)
if not cut then return 0 end
local head = string.sub(current, 1, cut - 1)
local version, held_until = string.match(head, '^(%d+) (%d+) ')
if not version then version = head end
if version ~= ARGV[1] then return 0 end
if held_until and tonumber(held_until) > tonumber(ARGV[3]) then return 0 end
local claimed = version .. ' ' .. ARGV[4] .. ' ' .. ARGV[2] .. string.sub(current, cut)
redis.call('SET', KEYS[1], claimed, 'KEEPTTL')
return 1
"""

#: End a claim early. ARGV: the claim id. Changes nothing unless that claim is the one held.
RELEASE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local cut = string.find(current, '\\n', 1, true)
if not cut then return 0 end
local version, claim = string.match(string.sub(current, 1, cut - 1), '^(%d+) %d+ (%x+)$')
if claim ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], version .. string.sub(current, cut), 'KEEPTTL')
return 1
"""


def parse_value(raw: Any, prefix: str, key: str) -> tuple[int, bytes] | None:
    """``(version, payload)`` of a key's value as GET returned it (None: no such key).
    Raises SnapshotError when the value is not an mfa_fsm record."""
    if raw is None:
        return None
    head, newline, payload = bytes(raw).partition(b"\n")
    version = head.partition(b" ")[0].decode("ascii", "replace")  # then a claim, if any
    if not newline or not version.isdigit():
        raise SnapshotError(
            f"a Redis key under prefix {prefix!r} (flow ref {flow_ref(key)}) does not "
            "hold an mfa_fsm record; is another application using the same key prefix?"
        )
    return int(version), payload


class RedisStore(RecordStore):
    """Snapshots in Redis, one key per flow; see :class:`~mfa_fsm.stores.base.FlowStore`.

    ``client`` is the application's ``redis.Redis`` (``decode_responses`` either way), or a
    ``redis.cluster.RedisCluster`` to scale out: every operation touches one key, so the
    cluster routes it to the node that owns the key's hash slot, and flows spread over the
    nodes. The ``clock`` only turns the absolute expiry into a TTL; Redis enforces it, so
    there is nothing to purge: every key is set with its TTL, and Redis deletes it when that
    ends. redis-py's errors (a server down, a timeout) raise
    :class:`~mfa_fsm.core.errors.StoreUnavailable`.
    """

    needs_purging = False
    backend_errors = (redis.RedisError,)

    @checked
    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        prefix: str = "mfa_fsm:flow:",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        if not callable(getattr(client, "register_script", None)):
            raise UsageError(
                "client must be a redis.Redis (or RedisCluster) client, e.g. "
                "redis.Redis.from_url(url)"
            )
        super().__init__(margin=margin, clock=clock)
        self.client = client
        self.prefix = prefix
        self._swap_script = client.register_script(SWAP_SCRIPT)
        self._claim_script = client.register_script(CLAIM_SCRIPT)
        self._release_script = client.register_script(RELEASE_SCRIPT)

    def _ttl_ms(self, record: Record) -> int:
        # Redis refuses a TTL of 0; a record already past its expiry is stored for 1 ms,
        # which is as good as not at all and keeps create/save free of a special case.
        return max(1, math.ceil((record.expires_at - self._clock()) * 1000))

    @staticmethod
    def _value(record: Record) -> bytes:
        payload = record.payload
        return b"%d\n" % record.version + (
            payload if isinstance(payload, bytes) else payload.encode()
        )

    def _insert(self, key: str, record: Record) -> bool:
        written = self.client.set(
            self.prefix + key, self._value(record), nx=True, px=self._ttl_ms(record)
        )
        return bool(written)

    def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        # The payload is binary: read it undecoded even from a decode_responses client.
        # (NEVER_DECODE is how redis-py's own DUMP reads binary; execute_command is untyped.)
        raw: Any = self.client.execute_command(  # type: ignore[no-untyped-call]
            "GET", self.prefix + key, **{NEVER_DECODE: []}
        )
        return parse_value(raw, self.prefix, key)

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        written = self._swap_script(
            keys=[self.prefix + key],
            args=[str(expected_version), self._value(record), self._ttl_ms(record)],
        )
        return int(written) == 1

    def _remove(self, key: str) -> None:
        self.client.delete(self.prefix + key)

    def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        claimed = self._claim_script(
            keys=[self.prefix + key],
            args=[str(version), claim, math.floor(self._clock() * 1000), math.ceil(until * 1000)],
        )
        return int(claimed) == 1

    def _release(self, key: str, claim: str) -> None:
        self._release_script(keys=[self.prefix + key], args=[claim])

    def _purge(self, now: float, limit: int | None) -> int:
        return 0  # Redis expires every key itself (each is written with its TTL)
