"""Start and stop real database servers for tests: Redis and PostgreSQL, on loopback only.

The stores are tested against the real servers, never fakes, because what matters (atomic
compare-and-set, TTLs, transactions under concurrency) is exactly what a fake gets wrong.
Each server runs in a fresh temporary directory, on a free port of 127.0.0.1, with no
persistence, and is stopped (and its directory removed) when the ``with`` block ends.

A missing server binary raises :class:`ServerUnavailable` with the command that installs it;
the pytest fixtures turn that into a failure, never a skip, so CI cannot pass by silently
leaving the real-server tests out.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

#: How long a server may take to accept connections before the start counts as failed.
START_TIMEOUT = 30.0


class ServerUnavailable(RuntimeError):
    """A server could not be started; the message says what to install or look at."""


@attrs.frozen
class RunningServer:
    """Where a started server listens."""

    host: str
    port: int
    #: For PostgreSQL: an SQLAlchemy URL of the test database; for Redis: a ``redis://`` URL.
    url: str
    #: The server's temporary directory (PostgreSQL: its data directory's parent).
    directory: Path | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def redis_server() -> Iterator[RunningServer]:
    """Run ``redis-server`` from PATH on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable(
            "redis-server is not on PATH; install it (Debian: apt-get install -y redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="mfa_fsm_redis_"))
    port = free_port()
    log = workdir / "redis.log"
    command = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(workdir),
        "--logfile", str(log),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: _redis_ping(port), process, "redis-server", log)
        yield RunningServer("127.0.0.1", port, f"redis://127.0.0.1:{port}/0")
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[list[RunningServer]]:
    """Run a real Redis Cluster of ``nodes`` masters (no replicas) on loopback.

    Each node is a ``redis-server --cluster-enabled yes`` with its own directory, client port
    and cluster-bus port; ``redis-cli --cluster create`` then splits the 16384 hash slots
    evenly among them, in order (node 0 gets 0-5460 of three), and the ``with`` block starts
    once every node reports ``cluster_state:ok``.
    """
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise ServerUnavailable(
            "redis-server and redis-cli are not on PATH; install them "
            "(Debian: apt-get install -y redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="mfa_fsm_redis_cluster_"))
    processes: list[subprocess.Popen[bytes]] = []
    servers: list[RunningServer] = []
    try:
        for index in range(nodes):
            port, bus = free_port(), free_port()
            node_dir = workdir / f"node{index}"
            node_dir.mkdir()
            log = node_dir / "redis.log"
            command = [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--dir", str(node_dir),
                "--logfile", str(log),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            processes.append(process)
            _wait_until(lambda port=port: _redis_ping(port), process, "redis-server", log)
            servers.append(RunningServer("127.0.0.1", port, f"redis://127.0.0.1:{port}"))
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if created.returncode != 0:
            raise ServerUnavailable(f"redis-cli --cluster create failed:\n{created.stdout[-800:]}")
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_cluster_ok(server.port) for server in servers):
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the Redis Cluster was not ok in {START_TIMEOUT} s")
            time.sleep(0.1)
        yield servers
    finally:
        for process in processes:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"CLUSTER INFO\r\n")
            return b"cluster_state:ok" in conn.recv(4096)
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def postgres_binaries() -> Path:
    """The directory of Debian's newest PostgreSQL server binaries (``initdb``, ``pg_ctl``)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).parent
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found under "
        "/usr/lib/postgresql/*/bin or on PATH; install them (Debian: apt-get install -y "
        "postgresql)"
    )


@contextlib.contextmanager
def postgres_server(
    database: str = "mfa_fsm_test", *, durable: bool = False
) -> Iterator[RunningServer]:
    """Run a throw-away PostgreSQL cluster on a free loopback port, with one empty database.

    ``durable``: every commit is in the write-ahead log before it is answered
    (``synchronous_commit`` on), so killing the server loses no answered commit.

    PostgreSQL refuses to run as root, so when the tests run as root (containers, CI) the
    cluster belongs to the ``postgres`` system user that Debian's package creates, and every
    server command runs as that user.
    """
    bindir = postgres_binaries()
    as_user: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="mfa_fsm_pg_"))
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable(
                    "running as root, but there is no 'postgres' user to run PostgreSQL as; "
                    "install Debian's postgresql package, which creates it"
                ) from None
            os.chown(workdir, owner.pw_uid, owner.pw_gid)
            as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        data, log, port = workdir / "data", workdir / "server.log", free_port()
        _run(
            [bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-locale", "--no-sync"],
            as_user,
        )  # fmt: skip
        options = _postgres_options(port, workdir, durable=durable)
        _run(
            [bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t",
             str(int(START_TIMEOUT)), "start"],
            as_user,
            log,
        )  # fmt: skip
        try:
            _run(
                [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 database],
                as_user,
            )  # fmt: skip
            yield RunningServer(
                "127.0.0.1",
                port,
                f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}",
                workdir,
            )
        finally:
            # "fast" disconnects clients (pools the tests left open) instead of waiting.
            _run([bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], as_user)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _postgres_options(port: int, workdir: Path, *, durable: bool) -> str:
    # A test cluster need not survive a machine crash; skipping the flushes makes it fast.
    # Without synchronous_commit a killed server also loses its last answered commits.
    flushes = "-c fsync=off -c full_page_writes=off"
    if not durable:
        flushes += " -c synchronous_commit=off"
    return f"-p {port} -c listen_addresses=127.0.0.1 -k {workdir} {flushes}"


def _postgres_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    owner = pwd.getpwnam("postgres")
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _run(command: list[Any], as_user: dict[str, Any], log: Path | None = None) -> None:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT * 2,
        check=False,
        **as_user,
    )
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        if log is not None:
            detail += "\n" + _log_tail(log)
        raise ServerUnavailable(f"{Path(str(command[0])).name} failed: {detail}")


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None:
            raise ServerUnavailable(f"{name} exited with {process.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"{name} did not start in {START_TIMEOUT} s:\n{_log_tail(log)}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Restartable:
    """A real server a test can kill (as a crash would) and start again on the same port and
    data directory, with what it had acknowledged before the kill still there."""

    def __init__(self, running: RunningServer, kill: Callable[[], None], start: Callable[[], None]):
        self.running = running
        self.url = running.url
        self._kill = kill
        self._start = start
        self.up = True

    def kill(self) -> None:
        """Stop the server abruptly: SIGKILL, no shutdown, no final save."""
        self._kill()
        self.up = False

    def start(self) -> None:
        """Start it again and wait until it accepts connections."""
        self._start()
        self.up = True


@contextlib.contextmanager
def restartable_redis() -> Iterator[Restartable]:
    """``redis-server`` as :func:`redis_server` runs it, but persistent: an append-only file
    fsynced on every write (``appendfsync always``), so a SIGKILL loses nothing it answered,
    which is how a Redis that holds flows must run for them to survive a restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable(
            "redis-server is not on PATH; install it (Debian: apt-get install -y redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="mfa_fsm_redis_aof_"))
    port = free_port()
    log = workdir / "redis.log"
    command = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(workdir),
        "--logfile", str(log),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--daemonize", "no",
    ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        processes.append(process)
        _wait_until(lambda: _redis_ping(port), process, "redis-server", log)

    def kill() -> None:
        processes[-1].kill()
        processes[-1].wait()

    start()
    try:
        yield Restartable(
            RunningServer("127.0.0.1", port, f"redis://127.0.0.1:{port}/0"), kill, start
        )
    finally:
        if processes[-1].poll() is None:
            _stop(processes[-1])
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def restartable_postgres(database: str = "mfa_fsm_test") -> Iterator[Restartable]:
    """A durable :func:`postgres_server` that a test can kill with ``pg_ctl stop -m
    immediate`` (every server process quits at once, as in a crash; the next start runs
    crash recovery from the write-ahead log) and start again on the same port."""
    with postgres_server(database, durable=True) as running:
        bindir = postgres_binaries()
        as_user = _postgres_user()
        assert running.directory is not None
        data, log = running.directory / "data", running.directory / "server.log"
        options = _postgres_options(running.port, running.directory, durable=True)

        def kill() -> None:
            _run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], as_user)

        def start() -> None:
            _run(
                [bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t",
                 str(int(START_TIMEOUT)), "start"],
                as_user,
                log,
            )  # fmt: skip

        server = Restartable(running, kill, start)
        try:
            yield server
        finally:
            if not server.up:  # postgres_server stops it cleanly, so it must be running
                server.start()
