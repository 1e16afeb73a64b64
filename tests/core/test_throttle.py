"""Throttle: the limits library's moving windows, per user and per client, memory and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
import redis
from limits import parse

from mfa_fsm import CyberArkConfig, CyberArkFlow, EntrustFlow, IdpError, Throttled, UsageError
from mfa_fsm.core.throttle import DEFAULT_RATES, Throttle, _digest, client_key, user_key
from mfa_fsm.testing import CyberArkEmulator
from tests.support.servers import RunningServer


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    """Both storages the README names: this process, or a real Redis shared by workers."""
    if request.param == "memory":
        return "memory://"
    server: RunningServer = request.getfixturevalue("redis_service")
    redis.Redis.from_url(server.url).flushdb()
    return server.url


def test_answers_per_user_then_throttled(storage: str) -> None:
    """N answers pass; the next raises Throttled with retry_after, whatever the address."""
    throttle = Throttle(storage, answers_per_user="3/minute")
    for number in range(3):
        throttle.check("answer", user="jsmith", client_ip=f"203.0.113.{number}")
    with pytest.raises(Throttled) as refused:
        throttle.check("answer", user="jsmith", client_ip="203.0.113.99")
    assert (refused.value.action, refused.value.scope) == ("answer", "user")
    assert 1 <= refused.value.retry_after <= 60
    assert "jsmith" not in str(refused.value)
    throttle.check("answer", user="someone-else", client_ip="203.0.113.99")


def test_per_client_address_across_users(storage: str) -> None:
    """One address trying many user ids is throttled by the per-client rate."""
    throttle = Throttle(storage, starts_per_client="4/minute")
    for number in range(4):
        throttle.check("start", user=f"user{number}", client_ip="198.51.100.7")
    with pytest.raises(Throttled) as refused:
        throttle.check("start", user="user9", client_ip="198.51.100.7")
    assert refused.value.scope == "client"
    assert "198.51.100.7" not in str(refused.value)
    throttle.check("start", user="user9", client_ip="198.51.100.8")


def test_send_cooldown_and_cap() -> None:
    """A second device send within the cooldown is refused; after it, sends run up to the cap."""
    throttle = Throttle(send_cooldown="1/2 seconds", sends_per_user="2/minute")
    throttle.check("send", user="u", client_ip=None)
    with pytest.raises(Throttled) as cooling:
        throttle.check("send", user="u", client_ip=None)
    assert cooling.value.retry_after <= 2
    time.sleep(cooling.value.retry_after + 0.1)
    throttle.check("send", user="u", client_ip=None)
    time.sleep(2.1)
    with pytest.raises(Throttled) as capped:
        throttle.check("send", user="u", client_ip=None)
    assert 2 < capped.value.retry_after <= 60


def test_refused_check_counts_nothing_more() -> None:
    """A refused check does not add to the window: the count stays at the rate's number."""
    throttle = Throttle(answers_per_user="1/minute")
    throttle.check("answer", user="u", client_ip=None)
    for _ in range(3):
        with pytest.raises(Throttled):
            throttle.check("answer", user="u", client_ip=None)
    stats = throttle._limiter.get_window_stats(
        parse("1/minute"), "mfa_fsm", "answers_per_user", _digest(user_key("u"))
    )
    assert stats.remaining == 0


@pytest.mark.parametrize("threads", [16])
def test_parallel_checks_pass_exactly_the_rate(storage: str, threads: int) -> None:
    """N threads released together: exactly the rate's number pass (atomic test-and-count,
    no test-then-count gap), on memory and on a real Redis."""
    throttle = Throttle(storage, sends_per_user="5/minute", send_cooldown="100/minute")
    barrier = threading.Barrier(threads)
    passed: list[int] = []
    refused: list[int] = []

    def attempt(number: int) -> None:
        barrier.wait()
        try:
            throttle.check("send", user="bob", client_ip=None)
        except Throttled:
            refused.append(number)
        else:
            passed.append(number)

    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert (len(passed), len(refused)) == (5, threads - 5)


@pytest.mark.parametrize(
    "variant", ["BOB", "Bob", " bob ", "\uff42\uff4f\uff42", "bob\u0307".replace("\u0307", "")]
)
def test_user_key_normalises_case_and_form(variant: str) -> None:
    """Case, full-width forms (NFKC) and outer spaces do not buy a fresh allowance."""
    throttle = Throttle(answers_per_user="1/minute")
    throttle.check("answer", user="bob", client_ip=None)
    with pytest.raises(Throttled):
        throttle.check("answer", user=variant, client_ip=None)
    assert user_key("Stra\u00dfe") == user_key("STRASSE")


def test_ipv6_addresses_share_their_64() -> None:
    """Addresses rotated within one IPv6 /64 share the per-address rate; another /64 does not."""
    throttle = Throttle(starts_per_client="2/minute")
    throttle.check("start", user="a", client_ip="2001:db8:1:2::1")
    throttle.check("start", user="b", client_ip="2001:db8:1:2:ffff::7")
    with pytest.raises(Throttled) as refused:
        throttle.check("start", user="c", client_ip="2001:db8:1:2:abcd:1:2:3")
    assert refused.value.scope == "client"
    throttle.check("start", user="d", client_ip="2001:db8:1:3::1")
    assert client_key("2001:db8:1:2::99") == "2001:db8:1:2::/64"
    assert client_key("::ffff:198.51.100.7") == client_key("198.51.100.7") == "198.51.100.7"


def test_cyberark_keys_by_login_without_suffix() -> None:
    """CyberArk matches bob, BOB and bob@example.com as one user: so does its throttle key,
    through the Flow API's provider hook, for starts and for device sends."""
    assert CyberArkFlow.throttle_user_key("Bob@Example.COM") == "bob"
    assert EntrustFlow.throttle_user_key(" JSmith ") == "jsmith"
    assert EntrustFlow.throttle_user_key("j@x.test") == "j@x.test"
    throttle = Throttle(starts_per_user="3/minute", send_cooldown="1/minute")
    with CyberArkEmulator() as emulator:
        config = CyberArkConfig(base_url=emulator.base_url)
        first = CyberArkFlow.start(config=config, user="bob", throttle=throttle)
        second = CyberArkFlow.start(config=config, user="BOB", throttle=throttle)
        CyberArkFlow.start(config=config, user="bob@example.com", throttle=throttle)
        with pytest.raises(Throttled):
            CyberArkFlow.start(config=config, user="Bob@Example.com", throttle=throttle)
        assert first.send("submit_first_factor").state == "OobPending"
        with pytest.raises(Throttled) as sends:
            second.send("submit_first_factor")
        assert sends.value.action == "send"


def test_step_refused_by_the_idp_still_counts() -> None:
    """Counted before the IdP call: a wrong password uses an answer like a right one would."""
    throttle = Throttle(answers_per_user="1/minute")
    with CyberArkEmulator() as emulator:
        config = CyberArkConfig(base_url=emulator.base_url)
        flow = CyberArkFlow.start(config=config, user="alice", throttle=throttle)
        other = CyberArkFlow.start(config=config, user="alice", throttle=throttle)
        with contextlib.suppress(IdpError):  # CyberArk may refuse it or carry on
            flow.send("submit_first_factor", answer="wrong")
        assert emulator.calls  # the IdP was asked
        calls = len(emulator.calls)
        with pytest.raises(Throttled):
            other.send("submit_first_factor", answer="alice-password")
        assert len(emulator.calls) == calls


def test_keys_hold_no_user_id_or_address(redis_service: RunningServer) -> None:
    """The Redis storage holds digests, never the user id or the address in clear."""
    client = redis.Redis.from_url(redis_service.url)
    client.flushdb()
    Throttle(redis_service.url).check("start", user="jsmith", client_ip="203.0.113.5")
    keys = [key.decode() for key in client.keys("*")]
    assert keys
    assert not [key for key in keys if "jsmith" in key or "203.0.113.5" in key]


def test_bad_rates_and_actions_are_usage_errors() -> None:
    """A rate limits cannot read, or an unknown action, is a UsageError saying what to write."""
    with pytest.raises(UsageError, match="5/15 minutes"):
        Throttle(sends_per_user="five a day")
    with pytest.raises(UsageError, match="unknown throttle action"):
        Throttle().check("teleport", user="u", client_ip=None)
    assert set(DEFAULT_RATES) == {
        "starts_per_user",
        "starts_per_client",
        "send_cooldown",
        "sends_per_user",
        "sends_per_client",
        "answers_per_user",
        "answers_per_client",
    }


def test_reset_forgets_every_count() -> None:
    """reset() clears the storage (tests, configuration changes)."""
    throttle = Throttle(answers_per_user="1/minute")
    throttle.check("answer", user="u", client_ip=None)
    throttle.reset()
    throttle.check("answer", user="u", client_ip=None)


def test_flow_api_counts_starts_and_device_sends() -> None:
    """Through the Flow API: starts count per user, and a passwordless push (CyberArk bob's
    first challenge) counts as a device send, refused within the cooldown before any call."""
    throttle = Throttle(starts_per_user="2/minute", send_cooldown="1/minute")
    with CyberArkEmulator() as emulator:
        config = CyberArkConfig(base_url=emulator.base_url)
        first = CyberArkFlow.start(config=config, user="bob", throttle=throttle)
        second = CyberArkFlow.start(config=config, user="bob", throttle=throttle)
        with pytest.raises(Throttled) as starts:
            CyberArkFlow.start(config=config, user="bob", throttle=throttle)
        assert starts.value.action == "start"
        assert first.send("submit_first_factor").state == "OobPending"
        calls = len(emulator.calls)
        with pytest.raises(Throttled) as sends:
            second.send("submit_first_factor")
        assert sends.value.action == "send"
        assert len(emulator.calls) == calls
        assert second.version == 0


@pytest.fixture(params=["memory", "redis"])
def async_storage(request: pytest.FixtureRequest) -> str:
    """The asyncio storages of ``limits.aio``: in this process, or a real Redis."""
    if request.param == "memory":
        return "async+memory://"
    server: RunningServer = request.getfixturevalue("redis_service")
    redis.Redis.from_url(server.url).flushdb()
    return "async+" + server.url


def test_an_asyncio_storage_is_awaited_by_the_async_driver(async_storage: str) -> None:
    """``Throttle("async+...://")`` counts through ``counting``, which plans.run_async awaits:
    the rate passes exactly, then Throttled with retry_after; a blocking check of it is
    refused with UsageError (it would need the event loop)."""
    from mfa_fsm.core.plans import run_async  # noqa: PLC0415

    throttle = Throttle(async_storage, answers_per_user="3/minute")
    assert throttle.is_async

    async def count(times: int) -> list[float]:
        """0 for each count that passed, retry_after for each refused one."""
        seen = []
        for _ in range(times):
            try:
                await run_async(throttle.counting("answer", user="jsmith", client_ip=None))
                seen.append(0.0)
            except Throttled as exc:
                seen.append(exc.retry_after)
        return seen

    async def count_and_close() -> list[float]:
        try:
            return await count(5)
        finally:
            bridge = getattr(throttle.storage, "bridge", None)
            if bridge is not None:  # limits' redis-py client: closed in the loop it used
                await bridge.storage.aclose()

    waits = asyncio.run(count_and_close())
    assert waits[:3] == [0.0] * 3
    assert all(wait >= 1 for wait in waits[3:])
    with pytest.raises(UsageError, match="async engines"):
        throttle.check("answer", user="someone", client_ip=None)


def test_an_async_engine_counts_in_an_asyncio_storage() -> None:
    """An AsyncEngine whose throttle lives in ``async+memory://``: the starts count, awaited
    in the flow's step, until Throttled; a blocking Engine with it is refused at its first
    start with UsageError, and nothing reaches the IdP."""
    from mfa_fsm import AsyncEngine, Engine, MemoryStore  # noqa: PLC0415
    from mfa_fsm.stores.aio import AsyncMemoryStore  # noqa: PLC0415

    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = CyberArkConfig(base_url=emulator.base_url, pod_scheme="http")
        throttle = Throttle("async+memory://", starts_per_user="2/minute")

        async def starts() -> list[str]:
            async with AsyncEngine(AsyncMemoryStore(), [config], throttle=throttle) as engine:
                seen = []
                for _ in range(3):
                    try:
                        await engine.start("cyberark", user="jsmith@example.com")
                        seen.append("started")
                    except Throttled:
                        seen.append("throttled")
                return seen

        assert asyncio.run(starts()) == ["started", "started", "throttled"]
        calls = len(emulator.calls)
        blocking = Engine(MemoryStore(), [config], throttle=Throttle("async+memory://"))
        with pytest.raises(UsageError, match="async engines"):
            blocking.start("cyberark", user="jsmith@example.com")
        assert len(emulator.calls) == calls


@pytest.fixture(scope="module")
def stopped_redis() -> str:
    """The URL of a real redis-server that has been started and stopped: nothing listens."""
    from tests.support.servers import redis_server  # noqa: PLC0415

    with redis_server() as server:
        url: str = server.url
    return url  # read after the with: the server has stopped


def test_a_storage_that_is_down_is_throttle_unavailable(stopped_redis: str) -> None:
    """The throttle's Redis is down: the engine raises ThrottleUnavailable (a
    StoreUnavailable) at a start and at a step, before any IdP call; the flow stays exactly
    as it was (same version and state) and carries on once the throttle counts again. The
    error names the storage and the exception class, never the server's address."""
    from mfa_fsm import Engine, MemoryStore, StoreUnavailable, ThrottleUnavailable  # noqa: PLC0415

    down = Throttle(stopped_redis)
    with pytest.raises(ThrottleUnavailable) as direct:
        down.check("answer", user="jsmith", client_ip="192.0.2.1")
    assert isinstance(direct.value, StoreUnavailable)
    assert "RedisStorage" in str(direct.value) and "ConnectionError" in str(direct.value)
    assert "127.0.0.1" not in str(direct.value) and stopped_redis not in str(direct.value)
    with CyberArkEmulator() as emulator:
        config = CyberArkConfig(base_url=emulator.base_url)
        engine = Engine(MemoryStore(), [config])
        calls = len(emulator.calls)
        with pytest.raises(ThrottleUnavailable):
            engine.throttled(down).start("cyberark", user="bob", client_ip="192.0.2.1")
        assert len(emulator.calls) == calls
        view = engine.start("cyberark", user="bob")
        calls = len(emulator.calls)
        with pytest.raises(ThrottleUnavailable):
            engine.throttled(down).send(view.flow_id, "submit_first_factor")
        assert len(emulator.calls) == calls
        after = engine.view(view.flow_id)
        assert (after.state, after.version) == (view.state, view.version)
        assert engine.send(view.flow_id, "submit_first_factor").state == "OobPending"


def test_an_async_storage_that_is_down_is_throttle_unavailable(stopped_redis: str) -> None:
    """``async+redis://`` down: the AsyncEngine raises ThrottleUnavailable, no IdP call."""
    from mfa_fsm import AsyncEngine, ThrottleUnavailable  # noqa: PLC0415
    from mfa_fsm.stores.aio import AsyncMemoryStore  # noqa: PLC0415

    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = CyberArkConfig(base_url=emulator.base_url, pod_scheme="http")
        down = Throttle("async+" + stopped_redis)

        async def start() -> None:
            async with AsyncEngine(AsyncMemoryStore(), [config], throttle=down) as engine:
                await engine.start("cyberark", user="jsmith@example.com")

        calls = len(emulator.calls)
        with pytest.raises(ThrottleUnavailable):
            asyncio.run(start())
        assert len(emulator.calls) == calls
