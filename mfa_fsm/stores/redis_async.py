"""A flow store in Redis for asyncio applications, over ``redis.asyncio``.

The same keys, values, TTLs and Lua scripts as :class:`~mfa_fsm.stores.redis.RedisStore`
(see that module for the layout and why each operation is atomic), so blocking and async
workers can share one Redis: every operation touches one key (Redis Cluster works), ``save``,
``claim`` and ``release`` are the same scripts (``EVALSHA`` with an ``EVAL`` fallback, through
redis-py's ``AsyncScript``), and Redis itself expires finished flows.

Requires the ``redis`` extra (redis-py ships ``redis.asyncio``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.client import NEVER_DECODE

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import UsageError
from mfa_fsm.stores.aio import AsyncRecordStore
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record
from mfa_fsm.stores.redis import (
    CLAIM_SCRIPT,
    RELEASE_SCRIPT,
    SWAP_SCRIPT,
    RedisStore,
    parse_value,
)


class AsyncRedisStore(AsyncRecordStore):
    """Snapshots in Redis, one key per flow, awaited: an
    :class:`~mfa_fsm.stores.aio.AsyncFlowStore`.

    ``client`` is the application's ``redis.asyncio.Redis`` (``decode_responses`` either
    way; e.g. ``redis.asyncio.Redis.from_url(url)``) or ``redis.asyncio.cluster.RedisCluster``;
    close it with ``await client.aclose()``. ``prefix``, ``margin`` and ``clock`` are as for
    :class:`~mfa_fsm.stores.redis.RedisStore`. redis-py's errors raise
    :class:`~mfa_fsm.core.errors.StoreUnavailable`.
    """

    needs_purging = False
    backend_errors = (redis.RedisError,)

    @checked
    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
        *,
        prefix: str = "mfa_fsm:flow:",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(client, redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster):
            raise UsageError(
                "client must be a redis.asyncio.Redis (or RedisCluster) client, e.g. "
                "redis.asyncio.Redis.from_url(url); a blocking redis.Redis goes to RedisStore"
            )
        super().__init__(margin=margin, clock=clock)
        self.client = client
        self.prefix = prefix
        self._swap_script = client.register_script(SWAP_SCRIPT)
        self._claim_script = client.register_script(CLAIM_SCRIPT)
        self._release_script = client.register_script(RELEASE_SCRIPT)

    def _ttl_ms(self, record: Record) -> int:
        # As RedisStore: Redis refuses a TTL of 0; a record already expired is kept 1 ms.
        return max(1, math.ceil((record.expires_at - self._clock()) * 1000))

    async def _insert(self, key: str, record: Record) -> bool:
        written = await self.client.set(
            self.prefix + key, RedisStore._value(record), nx=True, px=self._ttl_ms(record)
        )
        return bool(written)

    async def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        # Undecoded even from a decode_responses client, as RedisStore reads it.
        raw: Any = await self.client.execute_command("GET", self.prefix + key, **{NEVER_DECODE: []})
        return parse_value(raw, self.prefix, key)

    async def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        written = await self._swap_script(
            keys=[self.prefix + key],
            args=[str(expected_version), RedisStore._value(record), self._ttl_ms(record)],
        )
        return int(written) == 1

    async def _remove(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        claimed = await self._claim_script(
            keys=[self.prefix + key],
            args=[str(version), claim, math.floor(self._clock() * 1000), math.ceil(until * 1000)],
        )
        return int(claimed) == 1

    async def _release(self, key: str, claim: str) -> None:
        await self._release_script(keys=[self.prefix + key], args=[claim])

    async def _purge(self, now: float, limit: int | None) -> int:
        return 0  # Redis expires every key itself (each is written with its TTL)
