"""Load: complete logins through the web pages on the Redis store, Flask and FastAPI side by side.

This process starts a real ``redis-server``, then for each app in turn (``--apps``, by default
every one of :data:`APPS`) an Entrust emulator of its own (with one user per client, so pushes
never cross) and the app's real server in separate processes:

* ``flask``: gunicorn with worker processes and threads, serving ``bench.load_app:create()``
  (the Flask blueprint over ``Engine`` on ``RedisStore``);
* ``fastapi``: uvicorn with worker processes, serving ``bench.load_app:create_asgi()`` (the
  Starlette adapter's router in a FastAPI app, over ``AsyncEngine`` on ``AsyncRedisStore``,
  the throttles counted in the same Redis through limits' asyncio storage).

Client threads here then run complete logins through the HTML pages, with CSRF tokens and
cookies like a browser, for a bounded time: alternately with a token code (EXTERNAL, select
TOKEN, code) and with a push the emulator approves after a short wait (EXTERNAL, select
TOKENPUSH, polls). Both apps get the same clients, the same time, and the same Redis.

It prints, per app: complete logins per second, p50/p99 latency of one page step, errors (must
be 0), lost or duplicated steps (must be 0: every query, first factor, select and answer the
clients' completed steps imply is counted in the emulator's call log, and the counts must
match exactly; push polls are not counted: how many a flow needs depends on timing), and the
app's CPU time per page step (user + system time of the server's processes, read from
``/proc`` before and after the clients ran, divided by the page steps served); then the apps
side by side, and one JSON line.

Run: python bench/load.py [--apps flask,fastapi] [--seconds 15] [--clients 16]
     [--workers 2] [--threads 8]
Traffic goes to 127.0.0.1 only. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class App:
    """One app under load: how to serve it, and what it needs installed."""

    title: str
    #: (args, port) -> the server's command line
    command: Callable[[argparse.Namespace, int], list[str]]
    #: modules the server and the app import (a missing one: the app cannot run here)
    needs: tuple[str, ...]


def _gunicorn(args: argparse.Namespace, port: int) -> list[str]:
    return [
        str(Path(sys.executable).with_name("gunicorn")),
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "bench.load_app:create()",
    ]  # fmt: skip


def _uvicorn(args: argparse.Namespace, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn",
        "--factory", "bench.load_app:create_asgi",
        "--workers", str(args.workers),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--log-level", "warning",
        "--no-access-log",
    ]  # fmt: skip


#: The apps, by name: Flask under gunicorn (threads), FastAPI under uvicorn (asyncio).
APPS = {
    "flask": App(
        "Flask blueprint, gunicorn {workers} workers x {threads} threads, Engine",
        _gunicorn,
        ("gunicorn", "flask", "mfa_fsm.web.blueprint"),
    ),
    "fastapi": App(
        "FastAPI + mfa_fsm.web.starlette, uvicorn {workers} workers, AsyncEngine",
        _uvicorn,
        ("uvicorn", "fastapi", "mfa_fsm.web.starlette"),
    ),
}


def missing(app: App) -> list[str]:
    """The modules ``app`` needs that cannot be imported here."""
    gone = []
    for module in app.needs:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            gone.append(module)
    return gone


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every process below it, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            # Fields after the command name (which may hold spaces): utime and stime are the
            # 14th and 15th of the whole line (proc(5)).
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile (a worker restarting): its time is lost either way
    return total


@dataclass
class Result:
    name: str
    title: str
    elapsed: float
    flows: int
    steps: int
    p50_ms: float
    p99_ms: float
    errors: list[str]
    mismatch: dict[str, tuple[int, int]]
    cpu_seconds: float
    counts: tuple[dict[str, int], dict[str, int]] = field(default_factory=lambda: ({}, {}))

    @property
    def lost(self) -> int:
        return sum(abs(a - b) for a, b in self.mismatch.values())

    @property
    def cpu_ms_per_step(self) -> float:
        return self.cpu_seconds * 1000 / self.steps if self.steps else float("nan")


def run_app(name: str, args: argparse.Namespace, redis_url: str) -> Result:
    """Serve ``name``'s app against a fresh emulator, run the clients, stop the server."""
    app = APPS[name]
    users = [f"load{number}" for number in range(args.clients)]
    with EntrustEmulator(demo_users=False) as emulator:
        for user in users:
            emulator.add_user(user, authenticators=("TOKEN", "TOKENPUSH"))
        port = free_port()
        env = {
            **os.environ,
            "MFA_LOAD_SECRET": secrets.token_hex(32),
            "MFA_LOAD_REDIS": redis_url,
            "MFA_LOAD_ENTRUST_URL": emulator.base_url,
            "MFA_LOAD_ENTRUST_APP": emulator.application_id,
            "PYTHONPATH": str(ROOT),
        }
        server = subprocess.Popen(  # noqa: S603 - our own app on loopback
            app.command(args, port), cwd=ROOT, env=env
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, server)
            clients = [Client(base, user, emulator) for user in users]
            cpu_before = process_tree_cpu(server.pid)
            started = time.monotonic()
            until = started + args.seconds
            threads = [threading.Thread(target=c.run, args=(until,)) for c in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            cpu = process_tree_cpu(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=15)
        title = app.title.format(**vars(args))
        return result(name, title, clients=clients, emulator=emulator, elapsed=elapsed, cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated: flask,fastapi")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    args = parser.parse_args()
    names = [name.strip() for name in args.apps.split(",") if name.strip()]
    unknown = [name for name in names if name not in APPS]
    if unknown or not names:
        raise SystemExit(f"--apps takes names of {', '.join(APPS)} (not {unknown})")
    for name in names:
        if gone := missing(APPS[name]):
            raise SystemExit(
                f"{name}: cannot run here, missing {', '.join(gone)} "
                f"(pip install -e '.[dev]'; or leave it out with --apps)"
            )
    with redis_server() as redis:
        results = [run_app(name, args, redis.url) for name in names]
    report(results, args)


def wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"{base}/login/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {base} did not come up")


def result(
    name: str,
    title: str,
    *,
    clients: list[Client],
    emulator: EntrustEmulator,
    elapsed: float,
    cpu: float,
) -> Result:
    latencies = sorted(latency for c in clients for latency in c.latencies)
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
    return Result(
        name=name,
        title=title,
        elapsed=elapsed,
        flows=sum(c.flows for c in clients),
        steps=len(latencies),
        p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
        p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else 0.0,
        errors=[error for c in clients for error in c.errors],
        mismatch=mismatch,
        cpu_seconds=cpu,
        counts=(dict(steps), dict(seen)),
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"Redis store, {args.clients} clients, {args.seconds:g} s per app on loopback "
        f"({os.cpu_count()} CPUs)"
    )
    for r in results:
        print(f"{r.name}: {r.title}")
        print(f"  complete logins:      {r.flows} ({r.flows / r.elapsed:.1f} flows/s)")
        print(f"  page steps:           {r.steps} (p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms)")
        print(
            f"  app CPU:              {r.cpu_seconds:.2f} s "
            f"({r.cpu_ms_per_step:.2f} ms per page step)"
        )
        print(
            f"  errors:               {len(r.errors)}"
            + (f"  first: {r.errors[0]}" if r.errors else "")
        )
        print(
            f"  lost or duplicated:   {r.lost} "
            f"(IdP calls by kind, clients vs emulator: {r.counts[0]} vs {r.counts[1]})"
        )
    print()
    print(
        f"{'app':<9} {'logins/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/step':>12} "
        f"{'errors':>7} {'lost':>5}"
    )
    for r in results:
        print(
            f"{r.name:<9} {r.flows / r.elapsed:>9.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
            f"{r.cpu_ms_per_step:>12.2f} {len(r.errors):>7} {r.lost:>5}"
        )
    print(
        json.dumps(
            {
                r.name: {
                    "logins_per_s": round(r.flows / r.elapsed, 2),
                    "p50_ms": round(r.p50_ms, 2),
                    "p99_ms": round(r.p99_ms, 2),
                    "cpu_ms_per_step": round(r.cpu_ms_per_step, 3),
                    "errors": len(r.errors),
                    "lost_or_duplicated": r.lost,
                }
                for r in results
            }
        )
    )
    if any(r.errors or r.mismatch or not r.flows for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
