"""Anti-automation throttles: how many starts, out-of-band sends and answers a user and a
client address may make in a window, counted with the ``limits`` library.

::

    throttle = Throttle()                                   # in this process (memory://)
    throttle = Throttle("redis://cache.internal:6379/0")    # shared by every worker
    engine = Engine(store, [entrust], throttle=throttle)

A step is one of three *actions* (``Flow.throttle_action`` decides which, before any IdP
call):

* ``start``: a new flow (a query or StartAuthentication at the IdP);
* ``send``: a step that makes the IdP reach the user's device (a push, an SMS, e-mail or
  voice code, a phone call): a short burst cap per user (``send_cooldown``) and a cap per
  window. Asking the *same* factor again is held back by the flow's own resend cooldown
  (``Challenge.resend_at``); the burst cap only stops a script, so a person may switch at
  once from a push to an SMS code to an e-mail code;
* ``answer``: a typed password, code or answer: guesses per window.

Every step counts *before* the IdP is asked, atomically (``limits``' ``hit`` takes an entry in
the moving window in one storage operation: a lock in memory, a Lua script in Redis), so N
parallel requests cannot all pass a test-then-count gap: exactly the rate's number pass.
The price: a step the IdP then refuses, wrong answers and IdP outages included, still
counts, and cannot be given back (``limits`` has no way to remove one entry from a moving
window, only ``clear`` of the whole key). When several rates apply, the ones tested before
the refusing one have counted too; both err on the safe side (fewer attempts, never more).

The counter may live in a blocking ``limits`` storage (``memory://``, ``redis://``) or an
asyncio one (``async+memory://``, ``async+redis://``: ``limits.aio``): a step's counts are
yielded to the flow's driver as I/O (:meth:`Throttle.counting`), so the async engines await
an async storage (a Redis round trip holds no thread) while the blocking engines call a
blocking one. An async storage under a blocking engine is refused with UsageError.

Each action has a rate per user and one per client address (the ``client_ip`` of the step,
when the caller gives one). A refused step raises :class:`~mfa_fsm.core.errors.Throttled`
with ``retry_after`` (seconds) *before* the IdP is called, so the flow is unchanged and the
IdP sees nothing (OWASP ASVS 4.0.3 2.2.1 "anti-automation controls"; 2.7.x for out-of-band
sends). Rates are ``limits`` strings (``"5/15 minutes"``); counts use the moving-window
strategy, in the memory or Redis storage. Keys are SHA-256 digests of the user id and the
address, so the storage never holds either in clear.

User ids are keyed the way IdPs match users, so a change of case or form does not buy a
fresh allowance: Unicode NFKC, then ``casefold()``, then outer whitespace stripped
(:func:`user_key`); a flow class may narrow it further with its ``throttle_user_key``
classmethod (CyberArk drops the ``@login_suffix``). Users that the IdP would tell apart but
whose keys collide share one allowance: over-throttling, the safe side. IPv6 client
addresses are keyed by their /64 network (one subscriber's usual assignment, RFC 6177
section 2 / RFC 7421), so rotating addresses within one prefix does not escape the
per-address rates; IPv4 addresses are keyed whole.
"""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import math
import time
import unicodedata
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import attrs
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mfa_fsm.core.errors import MfaError, Throttled, ThrottleUnavailable, UsageError

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage
    from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter

#: The actions a step may count as.
ACTIONS = ("start", "send", "answer")

#: Defaults: generous for a person, slow for a script. Five wrong answers lock most IdP
#: authenticators, so ten guesses per user in fifteen minutes still lets a person retry
#: after a typo while a script gets nowhere fast.
DEFAULT_RATES: dict[str, str] = {
    "starts_per_user": "10/10 minutes",
    "starts_per_client": "30/10 minutes",
    # Three sends a minute: switching factors (push, then SMS, then e-mail) passes at once;
    # re-sending one factor waits for its resend_at; a bomber stops at sends_per_user.
    "send_cooldown": "3/minute",
    "sends_per_user": "5/15 minutes",
    "sends_per_client": "20/15 minutes",
    "answers_per_user": "10/15 minutes",
    "answers_per_client": "30/15 minutes",
}


def _rate(name: str, value: str) -> RateLimitItem:
    try:
        return parse(value)
    except ValueError:
        raise UsageError(
            f"{name}={value!r} is not a rate: write it as limits does, e.g. '5/15 minutes'"
        ) from None


class Throttle:
    """Counts starts, sends and answers per user and per client address (see module docs).

    ``storage`` is a ``limits`` storage URI (``"memory://"``, ``"redis://host:port/db"``,
    ``"rediss://..."``; ``"async+memory://"``, ``"async+redis://..."`` for the async
    engines, the latter over redis-py's ``redis.asyncio``) or a ``limits`` storage
    (``limits.storage`` or ``limits.aio.storage``); every other argument is a rate
    (``"N/period"``) overriding :data:`DEFAULT_RATES`. ``prefix`` keeps this application's
    counters apart from others in a shared Redis. Raises :class:`UsageError` for a
    malformed rate. Thread-safe; share one per process.
    """

    def __init__(
        self,
        storage: str | Storage | AsyncStorage = "memory://",
        *,
        starts_per_user: str = DEFAULT_RATES["starts_per_user"],
        starts_per_client: str = DEFAULT_RATES["starts_per_client"],
        send_cooldown: str = DEFAULT_RATES["send_cooldown"],
        sends_per_user: str = DEFAULT_RATES["sends_per_user"],
        sends_per_client: str = DEFAULT_RATES["sends_per_client"],
        answers_per_user: str = DEFAULT_RATES["answers_per_user"],
        answers_per_client: str = DEFAULT_RATES["answers_per_client"],
        prefix: str = "mfa_fsm",
    ) -> None:
        if isinstance(storage, str) and storage.startswith(("async+redis://", "async+rediss://")):
            # redis-py's asyncio client (the "redis" extra) rather than limits' default,
            # coredis: one Redis client library for the stores and the throttle.
            storage = storage_from_string(storage, implementation="redispy")
        self.storage = storage_from_string(storage) if isinstance(storage, str) else storage
        #: Whether the storage is an asyncio one (``limits.aio``): only the async engines
        #: can count in it.
        # Asked by module so that a blocking program never imports limits.aio (asyncio).
        self.is_async = type(self.storage).__module__.startswith("limits.aio.")
        self._limiter: MovingWindowRateLimiter | AsyncMovingWindowRateLimiter
        if self.is_async:
            from limits.aio.strategies import MovingWindowRateLimiter as Async  # noqa: PLC0415

            self._limiter = Async(self.storage)
        else:
            self._limiter = MovingWindowRateLimiter(self.storage)
        self._prefix = prefix
        base = self.storage.base_exceptions
        # The storage's own errors (redis-py's RedisError: connection refused, timeout) and
        # limits' wrapper; not the memory storage's placeholder, ValueError (a bug there).
        self._storage_errors: tuple[type[Exception], ...] = (
            StorageError,
            *(e for e in (base if isinstance(base, tuple) else (base,)) if e is not ValueError),
        )
        per_user = {
            "start": [("starts_per_user", starts_per_user)],
            "send": [("send_cooldown", send_cooldown), ("sends_per_user", sends_per_user)],
            "answer": [("answers_per_user", answers_per_user)],
        }
        per_client = {
            "start": [("starts_per_client", starts_per_client)],
            "send": [("sends_per_client", sends_per_client)],
            "answer": [("answers_per_client", answers_per_client)],
        }
        self._rules: dict[str, list[tuple[str, str, RateLimitItem]]] = {
            action: [("user", name, _rate(name, value)) for name, value in per_user[action]]
            + [("client", name, _rate(name, value)) for name, value in per_client[action]]
            for action in ACTIONS
        }

    def check(self, action: str, *, user: str, client_ip: str | None) -> None:
        """Count one ``action`` by ``user`` from ``client_ip`` (``None``: no per-address
        count) atomically, or raise :class:`Throttled` if a rate is spent (the rates tested
        before the spent one have counted: see the module docs). Blocking: a throttle on an
        async storage raises UsageError here (the flows count through :meth:`counting`).

        Raises :class:`UsageError` for an unknown action, :class:`ThrottleUnavailable` when
        the storage fails.
        """
        counting = self.counting(action, user=user, client_ip=client_ip)
        try:
            count = next(counting)
            while True:
                try:
                    result = count.blocking()
                except Exception as exc:  # counting() turns a storage error into its own
                    count = counting.throw(exc)
                else:
                    count = counting.send(result)
        except StopIteration:
            return

    def counting(
        self, action: str, *, user: str, client_ip: str | None
    ) -> Generator[Count, Any, None]:
        """:meth:`check` as a plan (:mod:`mfa_fsm.core.plans`): it yields each storage
        operation as a :class:`Count`, which a blocking driver calls and an async driver
        awaits, so one flow step counts in a blocking or an asyncio storage alike.

        Raises :class:`Throttled` past a rate, :class:`ThrottleUnavailable` (a
        StoreUnavailable) when the storage fails (a Redis server down or timing out): nothing
        else was done, so the step may be retried once the storage is back."""
        rules = self._rules.get(action)
        if rules is None:
            raise UsageError(f"unknown throttle action {action!r}; one of {list(ACTIONS)}")
        keys = {
            "user": _digest(user_key(user)),
            "client": _digest(client_key(client_ip)) if client_ip else None,
        }
        for scope, name, item in rules:
            key = keys[scope]
            if key is None:
                continue
            # hit() is the atomic test-and-count: False (nothing counted) when spent.
            passed = yield from self._counted(
                Count(self._limiter.hit, (item, self._prefix, name, key))
            )
            if not passed:
                stats = yield from self._counted(
                    Count(self._limiter.get_window_stats, (item, self._prefix, name, key))
                )
                wait = float(max(1, math.ceil(stats.reset_time - time.time())))
                raise Throttled(action, scope, wait)

    def _counted(self, count: Count) -> Generator[Count, Any, Any]:
        """``count`` yielded, its storage's failure raised as ThrottleUnavailable (its class
        name only: a driver's message may quote the key or the server's address)."""
        try:
            return (yield count)
        except MfaError:
            raise
        except self._storage_errors as exc:
            raise ThrottleUnavailable(type(self.storage).__name__, type(exc).__name__) from None

    def reset(self) -> None:
        """Forget every count (tests, or after a configuration change). Blocking storages
        only; for an async one ``await throttle.storage.reset()``."""
        Count(self.storage.reset).blocking()


@attrs.frozen
class Count:
    """One storage operation of a throttle: called by a blocking driver, awaited by an async
    one (:class:`mfa_fsm.core.plans.Io`). A coroutine under a blocking driver (an async
    storage given to a blocking engine) is refused with UsageError."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()

    def blocking(self) -> Any:
        result = self.function(*self.args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise UsageError(
                "this Throttle counts in an asyncio storage (async+...://), which only the "
                "async engines (AsyncEngine, AsyncSealedEngine) can await; give a blocking "
                "engine a blocking storage (memory://, redis://...)"
            )
        return result

    async def awaited(self) -> Any:
        result = self.function(*self.args)
        if inspect.isawaitable(result):
            return await result
        return result  # a blocking storage (memory://) under an async engine: no I/O wait


def user_key(user_id: str) -> str:
    """The form of ``user_id`` a throttle counts under: Unicode NFKC (UAX #15), then
    ``str.casefold()``, then outer whitespace stripped, as IdPs match user names."""
    return unicodedata.normalize("NFKC", user_id).casefold().strip()


def client_key(client_ip: str) -> str:
    """The form of a client address a throttle counts under: an IPv6 address's /64
    network (``"2001:db8:1:2::/64"``), an IPv4 address (or anything else) as given."""
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _digest(value: str) -> str:
    # Counters outlive requests in a shared storage: keep user ids and addresses out of it.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
