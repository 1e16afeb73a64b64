"""Polling discipline, measured at the emulators on a fake clock both sides share.

A push is approved after T seconds of fake time while the flow is polled, by the blocking
driver or by a page that asks far more often than it should. What reaches the IdP is read
from the emulator's own call log: at most T / interval + 1 polls, none before the flow's
``next_poll_at``, none closer than the interval (or the IdP's Retry-After) after a failure,
and none after the deadline.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from mfa_fsm import (
    CyberArkFlow,
    EntrustConfig,
    EntrustFlow,
    Flow,
    IdpError,
    RequestsTransport,
)
from mfa_fsm.core.driver import wait_while_pending
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import NO_RETRY
from mfa_fsm.core.transport import HttpRequest, HttpResponse
from mfa_fsm.testing import CyberArkEmulator, EmulatorServer, EntrustEmulator
from tests.support.cyberark import Clock, config_for, pick

PROVIDERS = ["entrust", "cyberark"]
LIFETIME = 60.0


class PollWatch:
    """A transport that notes, for every poll the flow sends, the fake time and the
    ``next_poll_at`` the flow held then (a step commits only when it ends)."""

    def __init__(self, clock: Clock, is_poll: Callable[[HttpRequest], bool]) -> None:
        self.inner = RequestsTransport()
        self.clock = clock
        self.is_poll = is_poll
        self.flow: Flow | None = None
        self.sent: list[tuple[float, float | None]] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        if self.flow is not None and self.is_poll(request):
            self.sent.append((self.clock.now, self.flow.snapshot().next_poll_at))
        return self.inner.send(request)


@attrs.define
class Push:
    """A flow in OobPending on a fake clock, and the user's phone at the emulator."""

    flow: Flow
    watch: PollWatch
    emulator: EmulatorServer
    approve: Callable[[], None]
    is_poll: Callable[[Any], bool]

    def polls(self) -> list[float]:
        """When each poll reached the emulator (fake time), from its own call log."""
        with self.emulator.lock:
            return [call.time for call in self.emulator.calls if self.is_poll(call)]


def _entrust_poll(call: Any) -> bool:
    body = call.json if isinstance(call, HttpRequest) else call.body
    return call.path.endswith("/TOKENPUSH/complete") and not (
        isinstance(body, dict) and ({"response", "cancel"} & body.keys())
    )


def _cyberark_poll(call: Any) -> bool:
    body = call.json if isinstance(call, HttpRequest) else call.body
    return isinstance(body, dict) and body.get("Action") == "Poll"


def entrust_push(stack: contextlib.ExitStack, clock: Clock, interval: float) -> Push:
    emulator = stack.enter_context(EntrustEmulator(push_lifetime=LIFETIME))
    emulator.clock = clock
    watch = PollWatch(clock, _entrust_poll)
    config = EntrustConfig(
        base_url=emulator.base_url,
        application_id=emulator.application_id,
        poll_interval=interval,
        push_lifetime=LIFETIME,
        retry=NO_RETRY,
    )
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), transport=watch, clock=clock
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="TOKENPUSH")
    return Push(flow, watch, emulator, lambda: emulator.approve_push("jsmith"), _entrust_poll)


def cyberark_push(stack: contextlib.ExitStack, clock: Clock, interval: float) -> Push:
    emulator = stack.enter_context(CyberArkEmulator(pod_fqdn_as_url=True, oob_lifetime=LIFETIME))
    emulator.clock = clock
    watch = PollWatch(clock, _cyberark_poll)
    config = config_for(emulator, poll_interval=interval, oob_lifetime=LIFETIME, retry=NO_RETRY)
    flow = CyberArkFlow.start(config=config, user="alice", transport=watch, clock=clock)
    flow.send("submit_first_factor", answer="alice-password")
    flow.send("select_second_factor", factor=pick(flow.view(), "Mobile Authenticator"))
    return Push(flow, watch, emulator, lambda: emulator.approve("alice"), _cyberark_poll)


@pytest.fixture
def push() -> Iterator[Callable[[str, float], Push]]:
    """Start a push for a provider with a poll interval, on a fresh emulator whose clock is
    the flow's."""
    with contextlib.ExitStack() as stack:

        def begin(provider: str, interval: float) -> Push:
            build = entrust_push if provider == "entrust" else cyberark_push
            session = build(stack, Clock(), interval)
            assert session.flow.state == "OobPending"
            session.watch.flow = session.flow
            return session

        yield begin


def approving_sleep(push: Push, after: float) -> Callable[[float], None]:
    """The driver's sleep: moves the fake clock, and the user approves ``after`` seconds in."""
    clock = push.watch.clock
    approve_at = clock.now + after
    approved = False

    def sleep(seconds: float) -> None:
        nonlocal approved
        assert seconds >= 0
        clock.advance(seconds)
        if not approved and clock.now >= approve_at:
            push.approve()
            approved = True

    return sleep


def assert_never_early(push: Push) -> None:
    """No poll reached the IdP before the ``next_poll_at`` the flow held when it was sent."""
    assert push.watch.sent, "nothing was polled"
    for now, due in push.watch.sent:
        assert due is None or now >= due, f"a poll at {now} went before next_poll_at {due}"


@pytest.mark.parametrize("interval", [1.0, 2.5])
@pytest.mark.parametrize("after", [0.5, 3.0, 7.3, 20.0])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_driver_polls_at_the_interval(
    push: Callable[[str, float], Push], provider: str, after: float, interval: float
) -> None:
    """The blocking driver sends at most T / interval + 1 polls for a push approved after T
    seconds, none before next_poll_at, and completes."""
    session = push(provider, interval)
    view = wait_while_pending(session.flow, sleep=approving_sleep(session, after))
    assert view.state == "Completed"
    polls = session.polls()
    assert len(polls) == len(session.watch.sent)
    assert len(polls) <= after / interval + 1
    assert_never_early(session)
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert all(gap >= interval - 1e-6 for gap in gaps), gaps


@pytest.mark.parametrize("provider", PROVIDERS)
def test_eager_page_is_answered_from_the_snapshot(
    push: Callable[[str, float], Push], provider: str
) -> None:
    """A page that asks every 0.1 s still reaches the IdP at most once per interval: early
    polls answer from the snapshot, with the same version."""
    interval, after = 2.0, 9.0
    session = push(provider, interval)
    sleep = approving_sleep(session, after)
    flow = session.flow
    while not flow.is_final:
        version = flow.version
        view = flow.send("poll")
        assert view.version in (version, version + 1)
        sleep(0.1)
    assert flow.state == "Completed"
    assert len(session.polls()) <= after / interval + 1
    assert_never_early(session)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_is_honoured(push: Callable[[str, float], Push], provider: str) -> None:
    """After a 429 with Retry-After, the driver's next poll waits at least that long."""
    session = push(provider, 1.0)
    session.emulator.faults.inject("rate_limit", retry_after=7, times=2)
    view = wait_while_pending(session.flow, sleep=approving_sleep(session, 12.0))
    assert view.state == "Completed"
    polls = session.polls()
    assert polls[1] - polls[0] >= 7 and polls[2] - polls[1] >= 7
    assert_never_early(session)


@pytest.mark.parametrize(
    "provider",
    [
        "entrust",
        "cyberark",
    ],
)
def test_failed_polls_back_off(push: Callable[[str, float], Push], provider: str) -> None:
    """While the IdP answers HTTP 503, polls get further apart, never closer than the
    interval; once it recovers the flow completes."""
    interval = 2.5
    session = push(provider, interval)
    session.emulator.faults.inject("status", status=503, times=4)
    view = wait_while_pending(session.flow, sleep=approving_sleep(session, 20.0))
    assert view.state == "Completed"
    polls = session.polls()
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert all(gap >= interval - 1e-6 for gap in gaps), gaps
    assert gaps[:4] == sorted(gaps[:4]), f"waits shrank during the outage: {gaps}"
    assert_never_early(session)


def test_driver_follows_the_flows_back_off_after_network_errors(
    push: Callable[[str, float], Push],
) -> None:
    """After dropped connections, the driver waits the retry_after the flow's schedule
    gives (the outage so far), not a shorter back-off of its own."""
    session = push("cyberark", 1.0)
    clock = session.watch.clock
    clock.advance(10.0)  # the IdP last answered 10 s ago
    flow = session.flow
    assert isinstance(flow, CyberArkFlow)
    advised = flow.config.poll_schedule.retry_after(outage=10.0)
    session.emulator.faults.inject("drop", times=1)
    view = wait_while_pending(flow, sleep=approving_sleep(session, 0.0))
    assert view.state == "Completed"
    polls = session.polls()
    assert polls[1] - polls[0] >= advised


@pytest.mark.parametrize("provider", PROVIDERS)
def test_driver_ends_at_the_deadline(push: Callable[[str, float], Push], provider: str) -> None:
    """A push nobody answers ends Failed(expired) at its deadline, not a Retry-After later,
    and no poll reaches the IdP after the deadline."""
    session = push(provider, 1.0)
    deadline = session.flow.snapshot().deadline
    session.emulator.faults.inject("rate_limit", retry_after=240, times=1)
    session.watch.clock.advance(LIFETIME - 3.0)
    sleep = approving_sleep(session, float("inf"))
    view = wait_while_pending(session.flow, sleep=sleep)
    assert (view.state, view.failure) == ("Failed", "expired")
    assert all(time < deadline for time in session.polls())
    assert session.watch.clock.now <= deadline + 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unanswered_push_expires_without_polls_past_the_deadline(
    push: Callable[[str, float], Push], provider: str
) -> None:
    """A push nobody answers is polled until its deadline, then ends Failed(expired) with
    no poll after the deadline and at most lifetime / interval + 1 polls."""
    interval = 2.0
    session = push(provider, interval)
    deadline = session.flow.snapshot().deadline
    view = wait_while_pending(session.flow, sleep=approving_sleep(session, float("inf")))
    assert (view.state, view.failure) == ("Failed", "expired")
    polls = session.polls()
    assert all(time < deadline for time in polls)
    assert len(polls) <= LIFETIME / interval + 1
    assert session.watch.clock.now <= deadline + interval
    assert_never_early(session)


def test_idp_error_is_not_waited_out(push: Callable[[str, float], Push]) -> None:
    """A poll refused for good (not 429/5xx) propagates from the driver at once."""
    session = push("cyberark", 1.0)
    session.emulator.faults.inject("html")
    with pytest.raises(IdpError):
        wait_while_pending(session.flow, sleep=approving_sleep(session, 5.0))
    assert session.flow.state == "OobPending"
