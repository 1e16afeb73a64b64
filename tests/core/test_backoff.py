"""The one back-off policy (mfa_fsm.core.backoff) and its three users: the in-step retries,
the poll schedule and the terminal driver take their waits from it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_fsm.core import driver
from mfa_fsm.core.backoff import MAX_RETRY_AFTER, Backoff, honour_retry_after
from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.retry import RetryPolicy


def test_the_curve_doubles_up_to_the_cap() -> None:
    """first, 2 first, 4 first ... then the cap, forever (no overflow far down the line)."""
    backoff = Backoff(first=1.0, cap=16.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 16, 16]
    assert backoff.ceiling(10_000) == 16.0
    with pytest.raises(ValueError, match="counts from 1"):
        backoff.ceiling(0)


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - jitter, not cryptography


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_full_jitter_stays_under_the_curve(attempt: int, seed: int) -> None:
    """A jittered wait is uniform in [0, ceiling]: never negative, never above the curve."""
    backoff = Backoff(first=0.2, cap=2.0)
    assert 0.0 <= backoff.jittered(attempt, rng(seed)) <= backoff.ceiling(attempt)


def test_after_an_outage_the_wait_is_the_outage_between_first_and_cap() -> None:
    """The time-derived form of the same curve: 1, 2, 4 ... s for a caller that follows it."""
    backoff = Backoff(first=1.0, cap=30.0)
    outage, waits = 1.0, []
    for _ in range(7):
        waits.append(backoff.after_outage(outage))
        outage += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert Backoff(first=5.0, cap=1.0).after_outage(100.0) == 5.0  # a cap below first: first


def test_retry_after_is_bounded() -> None:
    """An IdP's Retry-After wins, but never below the floor nor above the cap."""
    assert honour_retry_after(7.0) == 7.0
    assert honour_retry_after(0.0, floor=1.0) == 1.0
    assert honour_retry_after(10_000.0) == MAX_RETRY_AFTER
    assert honour_retry_after(50.0, cap=20.0) == 20.0


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first=-1.0, cap=1.0)
    with pytest.raises(ValueError, match="cap"):
        Backoff(first=1.0, cap=-1.0)


@given(attempt=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_the_retry_policy_draws_from_the_same_curve(attempt: int, seed: int) -> None:
    """RetryPolicy.delay is Backoff(first_delay, max_delay).jittered, the same draw."""
    policy = RetryPolicy(first_delay=0.3, max_delay=3.0)
    backoff = Backoff(first=0.3, cap=3.0)
    assert policy.delay(attempt, rng(seed)) == backoff.jittered(attempt, rng(seed))
    assert policy.delay(attempt, rng(seed), retry_after=9.0) == 9.0


@given(interval=st.floats(0, 10), cap=st.floats(0, 600), outage=st.floats(0, 10_000))
def test_the_poll_schedule_backs_off_on_the_same_curve(
    interval: float, cap: float, outage: float
) -> None:
    """PollSchedule.retry_after without Retry-After is Backoff(interval, cap).after_outage."""
    schedule = PollSchedule(interval=interval, max_backoff=cap)
    assert schedule.retry_after(outage=outage) == Backoff(interval, cap).after_outage(outage)


def test_the_terminal_driver_backs_off_on_the_same_curve() -> None:
    """wait_while_pending waits 1, 2, 4, 8, 16, 16 s after failed polls in a row."""
    assert Backoff(first=driver.FIRST_BACKOFF, cap=driver.MAX_BACKOFF) == driver.BACKOFF
    assert [driver.BACKOFF.ceiling(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 16]
