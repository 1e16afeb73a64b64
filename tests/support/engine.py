"""Racing requests through the engine, shared by its tests, their spawned workers and the bench.

A plain module (not conftest): the multiprocessing tests' workers run in spawned
interpreters, which import it by name.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import structlog

from mfa_fsm import (
    Engine,
    EntrustConfig,
    EntrustFlow,
    FlowConflict,
    RequestsTransport,
    SealedEngine,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply
from tests.support.stores import build_store, close_store, in_threads

#: Where a test client says the user is; sent as clientIp on every call.
CLIENT_IP = "198.51.100.7"

#: What one racing request ended with: (the version it loaded, whether it won).
Attempt = tuple[int, bool]


def entrust_config(base_url: str, application_id: str, **overrides: Any) -> EntrustConfig:
    """An EntrustConfig for an emulator; polls may happen at once unless told otherwise."""
    settings: dict[str, Any] = {
        "base_url": base_url,
        "application_id": application_id,
        "client_ip": CLIENT_IP,
        "poll_interval": 0.0,
    }
    settings.update(overrides)
    return EntrustConfig(**settings)


class PauseAfter:
    """``target`` with one method that waits on ``barrier`` after it returns, so that every
    racing request has loaded the same version before any of them goes on."""

    def __init__(self, target: Any, method: str, barrier: Any) -> None:
        self._target = target
        self._method = method
        self._barrier = barrier

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method:
            return attribute

        def paused(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._barrier.wait(timeout=60)
            return result

        return paused


class CallLog:
    """``target`` with every method call's name noted in ``calls``, in order."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return noted


def race(step: Callable[[], int], rounds: int, barrier: Any) -> list[Attempt]:
    """Run ``step`` (one request; returns the version it produced) in ``rounds`` rounds.

    The request's load waits on ``barrier`` (see :class:`PauseAfter`), so every racer of a
    round holds the same version; the second wait keeps the next round from starting before
    every request of this one has ended.
    """
    outcomes: list[Attempt] = []
    for _ in range(rounds):
        try:
            outcomes.append((step() - 1, True))
        except FlowConflict as lost:  # FlowBusy included
            outcomes.append((lost.expected, False))
        barrier.wait(timeout=60)
    return outcomes


def race_in_threads(
    make_step: Callable[[Any], Callable[[], int]], workers: int, rounds: int
) -> list[Attempt]:
    """``race`` in ``workers`` threads; ``make_step(barrier)`` builds each thread's request."""
    return in_threads(workers, lambda barrier: race(make_step(barrier), rounds, barrier))


def engine_step(engine: Engine, flow_id: str, event: str, **data: Any) -> Callable[[], int]:
    """One request through ``engine``: send the event, return the new version."""

    def step() -> int:
        return engine.send(flow_id, event, **data).version

    return step


def sealed_step(
    engine: SealedEngine, token: str, flow_id: str, event: str, **data: Any
) -> Callable[[], int]:
    """One request through a sealed engine with the client's ``token``: the new version."""

    def step() -> int:
        view, _ = engine.send(token, flow_id, event, **data)
        return view.version

    return step


def race_in_process(
    *,
    kind: str,
    target: str,
    base_url: str,
    application_id: str,
    flow_id: str,
    event: str,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    """Entry point of a spawned worker: its own store, engine and HTTP connections."""
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # quiet worker
    store = build_store(kind, target)
    transport = RequestsTransport()
    try:
        engine = Engine(
            PauseAfter(store, "load", barrier),
            [entrust_config(base_url, application_id)],
            transport=transport,
        )
        results.put(("ok", race(engine_step(engine, flow_id, event), rounds, barrier)))
    except BaseException as exc:  # report anything, or the parent only sees a timeout
        results.put(("error", repr(exc)))
        barrier.abort()
        raise
    finally:
        transport.close()
        close_store(store)


def entrust_in_second_factor_selected(token_chars: int = 600) -> EntrustFlow:
    """An Entrust flow in SecondFactorSelected (OTP by SMS) holding two IdP tokens of
    ``token_chars`` random URL-safe characters, as large and incompressible as real ones."""

    def token() -> str:
        return secrets.token_urlsafe(token_chars)[:token_chars]

    script = ScriptedTransport(
        [
            json_reply(
                {
                    "authenticationTypes": ["EXTERNAL"],
                    "availableSecondFactor": ["TOKENPUSH", "TOKEN", "OTP", "KBA", "GRID"],
                    "token": token(),
                    "otpDeliveryInfo": {"availableOTPDelivery": ["SMS", "EMAIL", "VOICE"]},
                }
            ),
            json_reply({"authenticationCompleted": False, "token": token()}),
            json_reply(
                {"authenticationCompleted": False, "token": token(), "otpdeliveryType": "SMS"}
            ),
        ]
    )
    config = EntrustConfig(base_url="https://idp.invalid", application_id="app")
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jane.doe@example.com"), transport=script
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="OTP", delivery="SMS")
    return flow
