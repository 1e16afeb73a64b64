"""A whole Entrust OTP login over real HTTP: mfa_fsm against a hand-written requests script.

The Entrust emulator runs in a process of its own, so the client CPU measured here is the
client's alone. Three variants log in, interleaved round by round, against the same
emulator, each with the same four Authentication API calls (query, complete EXTERNAL,
select OTP by SMS, complete with the code):

* Engine: ``Engine(MemoryStore(), [config])`` made once, as an application does at start-up,
  then ``engine.start`` and three ``engine.send`` (no ``transport=``);
* Flow API: the README's first example, every step restored from JSON with
  ``EntrustFlow.restore(saved, config=config)`` (no ``transport=``);
* requests script: a hand-written ``requests.Session`` (one per login, as a script logging
  in once would make) posting the same JSON bodies and reading the tokens.

Reading the OTP from the emulator's control route is the test harness, not the client: its
CPU time is left out, and its connection is not counted. "New TCP connections per login" is
counted by the emulator (``GET /_emulator/connections``). Ratios are medians over rounds,
client CPU (process time) per login against the requests script.

Targets (issue 12): client CPU <= 1.3x the requests script, at most one connection per login.

Run: python bench/http_overhead.py [--rounds 9] [--logins 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import requests
import structlog

from mfa_fsm import Engine, EntrustConfig, EntrustFlow, MemoryStore, VerifiedUser
from mfa_fsm.testing import control

SERVER = """
import json, sys
from mfa_fsm.testing import EntrustEmulator
with EntrustEmulator() as idp:
    print(json.dumps({"base_url": idp.base_url, "application_id": idp.application_id}))
    sys.stdout.flush()
    sys.stdin.read()  # serve until the benchmark closes our stdin
"""

QUERY = "/api/web/v2/authentication/users"
SELECT = "/api/web/v2/authentication/users/authenticate/{}"
COMPLETE = "/api/web/v1/authentication/users/authenticate/{}/complete"
USER = "jsmith"
#: EXTERNAL starts only for a user the application vouches for: here the benchmark does.
VERIFIED = VerifiedUser(USER, checked_by="the benchmark")


class Harness:
    """Process CPU time of the client, less what the test harness spends (the OTP read)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.excluded = 0.0
        self.harness_connections = 0

    def otp(self) -> str:
        started = time.process_time()
        code = control.entrust_otp(self.base_url, USER)
        self.excluded += time.process_time() - started
        self.harness_connections += 1  # urllib opens one connection per control call
        return code


Login = Callable[[Harness], None]


def engine_login(config: EntrustConfig) -> Login:
    engine = Engine(MemoryStore(), [config])

    def login(harness: Harness) -> None:
        flow_id = engine.start("entrust", verified_user=VERIFIED).flow_id
        engine.send(flow_id, "submit_first_factor")
        engine.send(flow_id, "select_second_factor", factor="OTP", delivery="SMS")
        view = engine.send(flow_id, "submit_response", answer=harness.otp())
        assert view.state == "Completed"
        engine.delete(flow_id)

    return login


def flow_api_login(config: EntrustConfig) -> Login:
    def login(harness: Harness) -> None:
        saved = EntrustFlow.start(config=config, verified_user=VERIFIED).snapshot().to_json()
        flow = EntrustFlow.restore(saved, config=config)
        flow.send("submit_first_factor")
        saved = flow.snapshot().to_json()
        flow = EntrustFlow.restore(saved, config=config)
        flow.send("select_second_factor", factor="OTP", delivery="SMS")
        saved = flow.snapshot().to_json()
        flow = EntrustFlow.restore(saved, config=config)
        view = flow.send("submit_response", answer=harness.otp())
        assert view.state == "Completed"

    return login


def requests_login(config: EntrustConfig) -> Login:
    base, app = config.base_url, config.application_id
    accept = {"Accept": "application/json"}
    timeout = (3.05, 10.0)

    def login(harness: Harness) -> None:
        with requests.Session() as session:

            def post(path: str, body: dict[str, object], token: str | None = None) -> dict:  # type: ignore[type-arg]
                headers = accept if token is None else {**accept, "Authorization": token}
                reply = session.post(
                    base + path,
                    json={"applicationId": app, **body},
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
                reply.raise_for_status()
                return reply.json()  # type: ignore[no-any-return]

            token = post(QUERY, {"userId": USER})["token"]
            token = post(COMPLETE.format("EXTERNAL"), {}, token)["token"]
            token = post(SELECT.format("OTP"), {"authToken": token, "otpDeliveryType": "SMS"})[
                "token"
            ]
            done = post(COMPLETE.format("OTP"), {"response": harness.otp()}, token)
            assert done["authenticationCompleted"] is True

    return login


def opened(base_url: str) -> int:
    """Connections the emulator has accepted, this control call's own included."""
    return int(control.get(base_url + "/_emulator/connections")["opened"])


def run_batch(login: Login, base_url: str, logins: int) -> tuple[float, float]:
    """(client CPU µs per login, new TCP connections per login) over ``logins`` logins."""
    harness = Harness(base_url)
    before = opened(base_url)
    started = time.process_time()
    for _ in range(logins):
        login(harness)
    cpu = time.process_time() - started - harness.excluded
    # Less the harness's own connections: the OTP reads and the count read after the batch.
    new = opened(base_url) - before - harness.harness_connections - 1
    return cpu / logins * 1e6, new / logins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=True,
    )
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and emulator
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        config = EntrustConfig(base_url=where["base_url"], application_id=where["application_id"])
        variants = {
            "requests.Session script": requests_login(config),
            "Engine (no transport=)": engine_login(config),
            "Flow API (no transport=)": flow_api_login(config),
        }
        for login in variants.values():  # warm up: imports, caches, first connections
            run_batch(login, config.base_url, 2)
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        connections: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, login in variants.items():
                us, new = run_batch(login, config.base_url, args.logins)
                cpu[name].append(us)
                connections[name].append(new)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    reference = statistics.median(cpu["requests.Session script"])
    print(
        f"{args.rounds} rounds x {args.logins} Entrust OTP logins, variants interleaved, "
        "emulator in its own process; client CPU per login"
    )
    summary = {}
    for name in variants:
        median = statistics.median(cpu[name])
        per_login = statistics.median(connections[name])
        summary[name] = {
            "cpu_us": round(median),
            "ratio": round(median / reference, 2),
            "new_connections_per_login": round(per_login, 2),
        }
        print(
            f"  {name:26} CPU median {median:8.0f} µs  {median / reference:5.2f}x script"
            f"  new TCP connections per login {per_login:5.2f}"
        )
    print("targets: CPU <= 1.30x the script, <= 1 new connection per login")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
