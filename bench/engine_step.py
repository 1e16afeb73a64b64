"""One stateless web step of mfa_fsm against a bare python-statemachine cycle, side by side.

Every variant runs the same machine shape (the Entrust flow's), interleaved in each round:

* bare: dict -> model -> EntrustMachine(model) -> send(submit_response) -> dict, the
  reference every ratio is taken against;
* transitions: the same cycle on the ``transitions`` library (a new ``Machine`` per request,
  ``auto_transitions=False``, the Entrust machine's own guards as conditions);
* dict dispatch: the floor, ``{(state, event, outcome kind): target}`` looked up on a dict;
* mfa_fsm: JSON snapshot -> EntrustFlow.restore -> send("submit_response", answer=...)
  whose IdP call is answered by an in-process transport -> JSON snapshot;
* mfa_fsm async: the same step with ``await flow.send_async(...)`` over an in-process
  asynchronous transport, the steps awaited one after another on one event loop (the async
  driver's cost over the sync one: the same handler, the same exchange);
* mfa_fsm sealed: ``SealedEngine.send`` (no ledger): open the client's token -> restore ->
  send -> seal the new token; each step on a flow sealed before the clock started.

structlog is configured as an application would (level filter, key-value rendering), writing
to a logger that drops the line, so the log event's cost is measured but not terminal I/O.

Targets (issue 12): step <= 0.25x the bare cycle, sealed step <= 0.45x.

Run: python bench/engine_step.py [--rounds 15] [--cycles 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable

import attrs
import structlog
import transitions

from mfa_fsm import (
    EntrustConfig,
    EntrustFlow,
    HttpRequest,
    HttpResponse,
    Outcome,
    SealedEngine,
    SealedState,
    Snapshot,
    VerifiedUser,
)
from mfa_fsm.entrust.flow import EntrustMachine
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply

CONFIG = EntrustConfig(base_url="https://idp.invalid", application_id="app", client_ip="1.2.3.4")
#: EXTERNAL starts only for a user the application vouches for: here the benchmark does.
BENCH_USER = VerifiedUser("jsmith", checked_by="the benchmark")
COMPLETED = json_reply(
    {"authenticationCompleted": True, "token": "T" * 600, "firstName": "J", "lastName": "S"}
).body


class InProcessTransport:
    """Answers every request with the same recorded 'completed' reply."""

    def send(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, {"Content-Type": "application/json"}, COMPLETED)


class InProcessAsyncTransport:
    """The asynchronous twin of :class:`InProcessTransport`."""

    async def send_async(self, request: HttpRequest) -> HttpResponse:
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
    flow = EntrustFlow.start(config=CONFIG, verified_user=BENCH_USER, transport=script)
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


def _transitions_table() -> list[dict[str, object]]:
    """The Entrust machine's transitions, as ``transitions`` wants them, same guards."""
    table = []
    for state in EntrustMachine.states:
        for transition in state.transitions:
            guards = [spec.func for spec in transition._specs if spec.group.name == "COND"]
            for event in transition.events:
                table.append(
                    {
                        "trigger": str(event),
                        "source": state.id,
                        "dest": transition.target.id,
                        "conditions": guards,
                    }
                )
    return table


TRANSITIONS_STATES = [state.id for state in EntrustMachine.states]
TRANSITIONS_TABLE = _transitions_table()


def transitions_cycle() -> dict[str, object]:
    model = BareModel(**BARE_SAVED)  # type: ignore[arg-type]
    transitions.Machine(
        model=model,
        states=TRANSITIONS_STATES,
        transitions=TRANSITIONS_TABLE,
        initial=model.state,
        auto_transitions=False,
    )
    model.submit_response(outcome=COMPLETED_OUTCOME)  # type: ignore[attr-defined]
    assert model.state == "Completed"
    return {k: v for k, v in vars(model).items() if not callable(v)}


#: The floor: the whole decision as one dict lookup.
DISPATCH = {("SecondFactorSelected", "submit_response", "completed"): "Completed"}


def dict_dispatch_cycle() -> dict[str, object]:
    saved = dict(BARE_SAVED)
    target = DISPATCH.get((str(saved["state"]), "submit_response", COMPLETED_OUTCOME.kind))
    if target is None:
        raise ValueError("transition not allowed")
    saved["state"] = target
    return saved


def make_sealed_step(saved: str) -> tuple[Callable[[int], list[object]], Callable[[object], str]]:
    """A sealed step (prepare: tokens of fresh flows; step: one SealedEngine.send)."""
    engine = SealedEngine(
        SealedState({"k": SealedState.generate_key()}), [CONFIG], transport=InProcessTransport()
    )
    snapshot = Snapshot.from_json(saved)

    def prepare(count: int) -> list[object]:
        flows = []
        for index in range(count):
            flow = attrs.evolve(snapshot, flow_id=f"{snapshot.flow_id[:24]}{index:08d}")
            flows.append((flow.flow_id, engine.sealed.seal(flow)))
        return flows

    def step(prepared: object) -> str:
        flow_id, token = prepared  # type: ignore[misc]
        view, new_token = engine.send(token, flow_id, "submit_response", answer="12345678")
        assert view.state == "Completed"
        return new_token

    return prepare, step


def make_step(saved: str) -> Callable[[], str]:
    transport = InProcessTransport()

    def step() -> str:
        flow = EntrustFlow.restore(saved, config=CONFIG, transport=transport)
        flow.send("submit_response", answer="12345678")
        assert flow.state == "Completed"
        return flow.snapshot().to_json()

    return step


def make_async_steps(saved: str) -> Callable[[int], float]:
    """µs per ``send_async`` step, ``count`` steps awaited in a row on one event loop."""
    transport = InProcessAsyncTransport()
    loop = asyncio.new_event_loop()

    async def steps(count: int) -> float:
        gc.collect()
        started = time.perf_counter()
        for _ in range(count):
            flow = EntrustFlow.restore(saved, config=CONFIG, transport=transport)
            await flow.send_async("submit_response", answer="12345678")
            assert flow.state == "Completed"
            flow.snapshot().to_json()
        return (time.perf_counter() - started) / count * 1e6

    return lambda count: loop.run_until_complete(steps(count))


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


def per_prepared_call_us(
    variant: tuple[Callable[[int], list[object]], Callable[[object], object]], cycles: int
) -> float:
    """µs per step over ``cycles`` steps whose inputs were prepared before the clock started."""
    prepare, step = variant
    items = iter(prepare(cycles))
    return per_call_us(lambda: step(next(items)), cycles)


BARE = "bare python-statemachine cycle"
STEP = "mfa_fsm stateless step"
ASYNC_STEP = "mfa_fsm stateless step, send_async"
SEALED = "mfa_fsm sealed step"
TARGETS = {STEP: 0.25, SEALED: 0.45}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    configure_logging()
    saved = selected_snapshot_json()
    sealed = make_sealed_step(saved)
    variants: dict[str, Callable[[int], float]] = {
        BARE: lambda n: per_call_us(bare_cycle, n),
        "transitions cycle (new Machine)": lambda n: per_call_us(transitions_cycle, n),
        "dict dispatch (floor)": lambda n: per_call_us(dict_dispatch_cycle, n),
        STEP: lambda n: per_call_us(make_step(saved), n),
        ASYNC_STEP: make_async_steps(saved),
        SEALED: lambda n: per_prepared_call_us(sealed, n),
    }
    for timed in variants.values():  # warm up class-level caches
        timed(5)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, timed in variants.items():
            results[name].append(timed(args.cycles))
    print(f"snapshot in SecondFactorSelected: {len(saved)} bytes of JSON")
    print(f"{args.rounds} rounds x {args.cycles} cycles, variants interleaved; µs per cycle")
    medians = {name: statistics.median(samples) for name, samples in results.items()}
    bare = medians[BARE]
    for name, samples in results.items():
        target = f"  (target <= {TARGETS[name]:.2f}x)" if name in TARGETS else ""
        print(
            f"  {name:34} median {medians[name]:8.1f}  min {min(samples):8.1f}"
            f"  max {max(samples):8.1f}  {medians[name] / bare:7.4f}x bare{target}"
        )
    print(
        json.dumps(
            {
                "ratios": {k: round(v / bare, 3) for k, v in medians.items()},
                "medians_us": {k: round(v, 1) for k, v in medians.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
