"""The retry policy for safe calls: back-off, jitter, budget, Retry-After, non-transient."""

from __future__ import annotations

import random

import pytest

from mfa_fsm import IdpError, InvalidInput, TransportError
from mfa_fsm.core.retry import NO_RETRY, RetryPolicy, is_transient


class Flaky:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def down() -> TransportError:
    return TransportError("down", path="/p")


def busy(retry_after: float | None = None) -> IdpError:
    return IdpError("busy", path="/p", status=503, retry_after=retry_after)


def test_transient_errors_are_retried() -> None:
    """Network failures and 5xx are retried until the call succeeds."""
    waits: list[float] = []
    flaky = Flaky(down(), busy())
    assert RetryPolicy(attempts=3).call(flaky, sleep=waits.append) == "ok"
    assert flaky.calls == 3
    assert len(waits) == 2


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    """Each wait is uniform in [0, min(cap, first * 2**n)]."""
    policy = RetryPolicy(first_delay=0.5, max_delay=2.0)
    rng = random.Random(7)  # noqa: S311 - jitter, not cryptography
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 2.0)]:
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling * 0.8


def test_retry_after_is_honoured() -> None:
    """The IdP's Retry-After replaces the policy's own back-off."""
    waits: list[float] = []
    RetryPolicy(budget=10).call(Flaky(busy(retry_after=3.0)), sleep=waits.append)
    assert waits == [3.0]


def test_budget_stops_retries() -> None:
    """A wait that would overrun the budget is not taken; the error propagates."""
    flaky = Flaky(busy(retry_after=30.0))
    with pytest.raises(IdpError):
        RetryPolicy(budget=4.0).call(flaky, sleep=lambda _: None)
    assert flaky.calls == 1


def test_attempts_limit() -> None:
    """After the last attempt the error propagates."""
    flaky = Flaky(down(), down(), down(), down())
    with pytest.raises(TransportError):
        RetryPolicy(attempts=3, first_delay=0).call(flaky, sleep=lambda _: None)
    assert flaky.calls == 3


@pytest.mark.parametrize(
    "error",
    [IdpError("refused", path="/p", status=400, error_code="x"), InvalidInput("f", "bad")],
)
def test_non_transient_errors_are_not_retried(error: Exception) -> None:
    """An IdP refusal or a caller mistake is raised at once."""
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        RetryPolicy().call(flaky, sleep=lambda _: None)
    assert flaky.calls == 1


def test_no_retry() -> None:
    """NO_RETRY makes exactly one call."""
    flaky = Flaky(down())
    with pytest.raises(TransportError):
        NO_RETRY.call(flaky)
    assert flaky.calls == 1


def test_is_transient() -> None:
    """429 and 5xx and network failures are transient; 4xx is not."""
    assert is_transient(down())
    assert is_transient(IdpError("x", path="/", status=429))
    assert not is_transient(IdpError("x", path="/", status=404))
    assert not is_transient(IdpError("x", path="/"))


# -- boundaries of the budget --------------------------------------------------------------


def test_a_wait_that_exactly_fills_the_budget_is_taken() -> None:
    """Retry-After waits that add up to exactly the budget are still waited."""
    waits: list[float] = []
    flaky = Flaky(busy(retry_after=1.0), busy(retry_after=1.0))
    policy = RetryPolicy(attempts=3, budget=2.0)
    assert policy.call(flaky, sleep=waits.append) == "ok"
    assert waits == [1.0, 1.0]


def test_the_budget_counts_every_wait_of_the_step() -> None:
    """The budget is cumulative: the third wait would pass it, so the error propagates."""
    waits: list[float] = []
    flaky = Flaky(busy(retry_after=1.5), busy(retry_after=1.5), busy(retry_after=1.5))
    with pytest.raises(IdpError):
        RetryPolicy(attempts=5, budget=4.0).call(flaky, sleep=waits.append)
    assert waits == [1.5, 1.5]  # 1.5 + 1.5 + 1.5 > 4: no third wait
    assert flaky.calls == 3


def test_a_zero_budget_allows_only_zero_waits() -> None:
    waits: list[float] = []
    assert RetryPolicy(budget=0.0).call(Flaky(busy(retry_after=0.0)), sleep=waits.append) == "ok"
    with pytest.raises(IdpError):
        RetryPolicy(budget=0.0).call(Flaky(busy(retry_after=0.001)), sleep=waits.append)
    assert waits == [0.0]


def test_transport_errors_back_off_with_jitter_not_retry_after() -> None:
    """A network failure has no Retry-After: its wait comes from the back-off."""
    waits: list[float] = []
    policy = RetryPolicy(attempts=2, first_delay=0.5, max_delay=0.5)
    assert policy.call(Flaky(down()), sleep=waits.append, rng=random.Random(1)) == "ok"  # noqa: S311
    assert len(waits) == 1 and 0 <= waits[0] <= 0.5


def test_policy_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    for field in ("first_delay", "max_delay", "budget"):
        with pytest.raises(ValueError, match=field):
            RetryPolicy(**{field: -0.1})
    RetryPolicy(attempts=1, first_delay=0, max_delay=0, budget=0)  # zeros are allowed
