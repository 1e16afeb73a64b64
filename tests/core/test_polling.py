"""The poll schedule: the IdP's interval, Retry-After first, else a wait that doubles the
outage, capped; pure arithmetic, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.replies import MAX_RETRY_AFTER


def test_defaults_follow_the_vendor() -> None:
    """By default polls are one second apart (CyberArk: "once every second")."""
    assert PollSchedule().next_poll(100.0) == 101.0


def test_retry_after_wins() -> None:
    """The IdP's Retry-After is honoured whatever the outage, never below the interval."""
    schedule = PollSchedule(interval=1.0, max_backoff=10.0)
    assert schedule.retry_after(outage=50.0, retry_after=7.0) == 7.0
    assert schedule.retry_after(outage=50.0, retry_after=30.0) == 30.0
    assert schedule.retry_after(outage=0.0, retry_after=0.0) == 1.0
    assert schedule.retry_after(outage=0.0, retry_after=10_000.0) == MAX_RETRY_AFTER


def test_waits_double_when_followed() -> None:
    """A caller that waits as told retries after 1, 2, 4, 8 ... seconds, then at the cap."""
    schedule = PollSchedule(interval=1.0, max_backoff=30.0)
    outage, waits = 1.0, []
    for _ in range(7):
        wait = schedule.retry_after(outage=outage)
        waits.append(wait)
        outage += wait
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_short_outage_waits_one_interval() -> None:
    """Right after an answer the wait is the normal interval, not less."""
    assert PollSchedule(interval=2.0).retry_after(outage=0.0) == 2.0


def test_negative_settings_are_refused() -> None:
    """An interval or cap below zero is a configuration error."""
    with pytest.raises(ValueError, match="interval"):
        PollSchedule(interval=-1.0)
    with pytest.raises(ValueError, match="max_backoff"):
        PollSchedule(max_backoff=-1.0)


@given(
    interval=st.floats(0, 10),
    cap=st.floats(0, 600),
    outage=st.floats(0, 10_000),
    retry_after=st.none() | st.floats(0, 10_000),
)
def test_wait_is_bounded(
    interval: float, cap: float, outage: float, retry_after: float | None
) -> None:
    """Every wait is at least the interval and at most the larger of the caps."""
    wait = PollSchedule(interval, cap).retry_after(outage=outage, retry_after=retry_after)
    assert interval <= wait <= max(interval, cap, MAX_RETRY_AFTER)


@given(interval=st.floats(0.1, 30), now=st.floats(0, 2e9))
def test_next_poll_is_one_interval_on(interval: float, now: float) -> None:
    """After a "still pending" the next poll is exactly the configured interval away."""
    assert PollSchedule(interval=interval).next_poll(now) == pytest.approx(now + interval)


@given(
    interval=st.floats(0.1, 10),
    cap=st.floats(0, 600),
    asked=st.lists(st.none() | st.floats(0, 1000), min_size=1, max_size=12),
)
def test_an_outage_never_speeds_polling_up(
    interval: float, cap: float, asked: list[float | None]
) -> None:
    """A caller that follows the waits through an outage polls at most once per interval,
    and, where the IdP names no Retry-After, each wait is at least the one before (up to
    the cap)."""
    schedule = PollSchedule(interval, cap)
    outage, previous = 0.0, 0.0
    for retry_after in asked:
        wait = schedule.retry_after(outage=outage, retry_after=retry_after)
        assert wait >= interval
        if retry_after is None:
            assert wait >= min(previous, max(cap, interval))
        outage += wait
        previous = wait
