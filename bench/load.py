"""Load: complete logins through the web pages, under gunicorn, with the Redis store.

This process starts a real ``redis-server`` and an Entrust emulator (with one user per
client, so pushes never cross), then gunicorn serving ``bench.load_app`` (the mfa_fsm
blueprint over an Engine on Redis) in separate worker processes. Client threads here then
run complete logins through the HTML pages, with CSRF tokens and cookies like a browser, for
a bounded time: alternately with a token code (EXTERNAL, select TOKEN, code) and with a push
the emulator approves after a short wait (EXTERNAL, select TOKENPUSH, polls).

It prints flows per second, p50/p99 latency of one page step, errors (must be 0), and lost
or duplicated steps (must be 0): every query, first factor, select and answer the clients'
completed steps imply is counted in the emulator's call log, and the counts must match
exactly (push polls are not counted: how many a flow needs depends on timing).

Run: python bench/load.py [--seconds 15] [--clients 16] [--workers 2] [--threads 8]
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE, EntrustEmulator  # noqa: E402
from tests.support.servers import redis_server  # noqa: E402

APP_PASSWORD = "load-app-password"  # noqa: S105 - bench/load_app.py's own first factor
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STATE = re.compile(r'data-state="([A-Za-z]+)"')
PUSH_APPROVED_AFTER = 0.3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One person signing in, again and again, through the pages."""

    def __init__(self, base: str, user: str, emulator: EntrustEmulator) -> None:
        self.base = base
        self.user = user
        self.emulator = emulator
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.steps: Counter[str] = Counter()
        self.flows = 0

    def page(self, session: requests.Session, method: str, url: str, **data: str) -> str:
        started = time.perf_counter()
        reply = session.request(method, url, data=data or None, timeout=30)
        self.latencies.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise RuntimeError(f"HTTP {reply.status_code} on {url}")
        self.last_url = reply.url
        return reply.text

    def step(self, session: requests.Session, handle_url: str, name: str, **data: str) -> str:
        html = self.page(session, "POST", f"{handle_url}/{name}", csrf_token=self.csrf, **data)
        found = STATE.search(html)
        if found is None:
            raise RuntimeError(f"no state on the page after {name}")
        return found.group(1)

    def login(self, push: bool) -> None:
        with requests.Session() as session:
            # The application's own sign-in checks its password, then begins the flow,
            # which confirms EXTERNAL in the same request.
            html = self.page(
                session, "POST", f"{self.base}/signin", user=self.user, password=APP_PASSWORD
            )
            self.steps["query"] += 1
            self.steps["external"] += 1
            handle_url = self.last_url
            expect(STATE.search(html).group(1), "AwaitingSecondFactor")  # type: ignore[union-attr]
            self.csrf = CSRF.search(html).group(1)  # type: ignore[union-attr]
            if not push:
                state = self.step(session, handle_url, "factor", factor="TOKEN")
                expect(state, "SecondFactorSelected")
                self.steps["select"] += 1
                expect(
                    self.step(session, handle_url, "response", response=DEMO_TOKEN_CODE),
                    "Completed",
                )
                self.steps["answer"] += 1
            else:
                expect(self.step(session, handle_url, "factor", factor="TOKENPUSH"), "OobPending")
                self.steps["select"] += 1
                timer = threading.Timer(
                    PUSH_APPROVED_AFTER, self.emulator.approve_push, args=(self.user,)
                )
                timer.start()
                state = "OobPending"
                give_up = time.monotonic() + 20
                while state == "OobPending" and time.monotonic() < give_up:
                    time.sleep(0.1)
                    state = self.step(session, handle_url, "poll")
                timer.join()
                expect(state, "Completed")
                self.steps["confirmed"] += 1
        self.flows += 1

    def run(self, until: float) -> None:
        push = self.user.endswith(("1", "3", "5", "7", "9"))
        while time.monotonic() < until:
            try:
                self.login(push)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            push = not push


def expect(state: str, wanted: str) -> None:
    if state != wanted:
        raise RuntimeError(f"page shows {state}, expected {wanted}")


def emulator_counts(emulator: EntrustEmulator) -> Counter[str]:
    """The IdP calls the emulator answered with success, by kind of step."""
    counts: Counter[str] = Counter()
    for call in emulator.calls:
        if call.status != 200:
            continue
        path, body = call.path, call.body or {}
        if path.endswith("/authentication/users"):
            counts["query"] += 1
        elif path.endswith("/EXTERNAL/complete"):
            counts["external"] += 1
        elif path.endswith(("/authenticate/TOKEN", "/authenticate/TOKENPUSH")):
            counts["select"] += 1
        elif path.endswith("/TOKEN/complete") and body.get("response"):
            counts["answer"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    users = [f"load{number}" for number in range(args.clients)]
    with redis_server() as redis, EntrustEmulator(demo_users=False) as emulator:
        for user in users:
            emulator.add_user(user, authenticators=("TOKEN", "TOKENPUSH"))
        port = free_port()
        env = {
            **os.environ,
            "MFA_LOAD_SECRET": secrets.token_hex(32),
            "MFA_LOAD_REDIS": redis.url,
            "MFA_LOAD_ENTRUST_URL": emulator.base_url,
            "MFA_LOAD_ENTRUST_APP": emulator.application_id,
            "PYTHONPATH": str(ROOT),
        }
        gunicorn = Path(sys.executable).with_name("gunicorn")
        server = subprocess.Popen(  # noqa: S603 - our own app on loopback
            [
                str(gunicorn),
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "bench.load_app:create()",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base)
            clients = [Client(base, user, emulator) for user in users]
            started = time.monotonic()
            until = started + args.seconds
            threads = [threading.Thread(target=c.run, args=(until,)) for c in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=15)
        report(clients, emulator, elapsed, args)


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/login/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


def report(
    clients: list[Client], emulator: EntrustEmulator, elapsed: float, args: argparse.Namespace
) -> None:
    flows = sum(c.flows for c in clients)
    latencies = sorted(latency for c in clients for latency in c.latencies)
    errors = [error for c in clients for error in c.errors]
    steps: Counter[str] = Counter()
    for client in clients:
        steps.update(client.steps)
    seen = emulator_counts(emulator)
    # A failed flow may have made a call the client could not count (the error is reported).
    mismatch = {
        kind: (steps[kind], seen[kind])
        for kind in ("query", "external", "select", "answer")
        if steps[kind] != seen[kind]
    }
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads, Redis store, "
        f"{args.clients} clients, {elapsed:.1f} s on loopback"
    )
    print(f"  complete logins:      {flows} ({flows / elapsed:.1f} flows/s)")
    print(f"  page steps:           {len(latencies)} (p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    print(f"  errors:               {len(errors)}" + (f"  first: {errors[0]}" if errors else ""))
    print(
        f"  lost or duplicated:   {sum(abs(a - b) for a, b in mismatch.values())} "
        f"(IdP calls by kind, clients vs emulator: {dict(steps)} vs {dict(seen)})"
    )
    if errors or mismatch:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
