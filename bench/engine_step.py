"""One stateless web step of mfa_fsm against a bare python-statemachine cycle, side by side.

Both variants run the same machine shape (the Entrust flow's), interleaved in each round:

* bare: dict -> model -> EntrustMachine(model) -> send(submit_response) -> dict
* mfa_fsm: JSON snapshot -> EntrustFlow.restore -> send("submit_response", response=...)
  whose IdP call is answered by an in-process transport -> JSON snapshot

structlog is configured as an application would (level filter, key-value rendering), writing
to a logger that drops the line, so the log event's cost is measured but not terminal I/O.

Run: python bench/engine_step.py [--rounds 15] [--cycles 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable

import structlog

from mfa_fsm import EntrustConfig, EntrustFlow, HttpRequest, HttpResponse, Outcome
from mfa_fsm.entrust.flow import EntrustMachine
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply

CONFIG = EntrustConfig(base_url="https://idp.invalid", application_id="app", client_ip="1.2.3.4")
COMPLETED = json_reply(
    {"authenticationCompleted": True, "token": "T" * 600, "firstName": "J", "lastName": "S"}
).body


class InProcessTransport:
    """Answers every request with the same recorded 'completed' reply."""

    def send(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, {"Content-Type": "application/json"}, COMPLETED)


def selected_snapshot_json() -> str:
    """A realistic Entrust snapshot in SecondFactorSelected (OTP by SMS), as JSON."""
    script = ScriptedTransport(
        [
            json_reply(
                {
                    "authenticationTypes": ["EXTERNAL"],
                    "availableSecondFactor": ["TOKENPUSH", "TOKEN", "OTP", "KBA"],
                    "token": "Q" * 600,
                    "otpDeliveryInfo": {"availableOTPDelivery": ["SMS", "EMAIL", "VOICE"]},
                }
            ),
            json_reply({"authenticationCompleted": False, "token": "E" * 600}),
            json_reply(
                {"authenticationCompleted": False, "token": "S" * 600, "otpdeliveryType": "SMS"}
            ),
        ]
    )
    flow = EntrustFlow.start(config=CONFIG, user_id="jsmith", transport=script)
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="OTP", delivery="SMS")
    return flow.snapshot().to_json()


class BareModel:
    def __init__(self, state: str, attempts_left: int, token: str, factor: str) -> None:
        self.state = state
        self.attempts_left = attempts_left
        self.token = token
        self.factor = factor


BARE_SAVED = {
    "state": "SecondFactorSelected",
    "attempts_left": 3,
    "token": "S" * 600,
    "factor": "OTP",
}
COMPLETED_OUTCOME = Outcome("completed")


def bare_cycle() -> dict[str, object]:
    model = BareModel(**BARE_SAVED)  # type: ignore[arg-type]
    EntrustMachine(model=model).send("submit_response", outcome=COMPLETED_OUTCOME)
    assert model.state == "Completed"
    return dict(vars(model))


def make_step(saved: str) -> Callable[[], str]:
    transport = InProcessTransport()

    def step() -> str:
        flow = EntrustFlow.restore(saved, config=CONFIG, transport=transport)
        flow.send("submit_response", response="12345678")
        assert flow.state == "Completed"
        return flow.snapshot().to_json()

    return step


def configure_logging() -> None:
    """structlog as an application sets it up, writing to a logger that drops every line."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )


def per_call_us(fn: Callable[[], object], cycles: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for _ in range(cycles):
        fn()
    return (time.perf_counter() - started) / cycles * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    configure_logging()
    saved = selected_snapshot_json()
    step = make_step(saved)
    variants = {"bare python-statemachine cycle": bare_cycle, "mfa_fsm stateless step": step}
    for fn in variants.values():  # warm up class-level caches
        fn()
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            results[name].append(per_call_us(fn, args.cycles))
    print(f"snapshot in SecondFactorSelected: {len(saved)} bytes of JSON")
    print(f"{args.rounds} rounds x {args.cycles} cycles, variants interleaved; µs per cycle")
    medians = {}
    for name, samples in results.items():
        medians[name] = statistics.median(samples)
        low, high = min(samples), max(samples)
        print(f"  {name:34} median {medians[name]:8.1f}  min {low:8.1f}  max {high:8.1f}")
    ratio = medians["mfa_fsm stateless step"] / medians["bare python-statemachine cycle"]
    print(f"ratio mfa_fsm step / bare cycle: {ratio:.2f}x (target <= 1.50x)")
    print(
        json.dumps(
            {"ratio": round(ratio, 3), "medians_us": {k: round(v, 1) for k, v in medians.items()}}
        )
    )


if __name__ == "__main__":
    main()
