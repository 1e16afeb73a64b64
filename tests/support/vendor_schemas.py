"""Every emulator reply checked against the vendor's OpenAPI response schema for its path.

``vendor_response_schemas.json`` (beside this file) holds the response schemas of the paths
the emulators serve, written for this suite from the vendors' OpenAPI documents (Entrust
IDaaS Authentication API 5.46; CyberArk Identity Authentication & Authorization); its
``source`` fields name each document and version. :func:`check_reply` is installed as
:attr:`EmulatorServer.reply_check` for the whole run (``tests/conftest.py``), so every reply
an in-process emulator sends in the suite is validated, and a test fails on the first reply
that does not validate.

Rules:

* A reply to a documented method and path must have a status the document lists for it, and
  a JSON body that validates against that status's schema (no body where none is given).
* Undocumented paths (the emulators' unknown-path pages) and methods (a GET to a POST-only
  path) have no schema and are not checked.
* Replies shaped by an injected fault (5xx, 429, junk bodies, mangled enums) are the point of
  those tests and are not checked; ``slow`` and the replayed-success faults send real replies
  and are.
* CyberArk: the document gives ``Result`` only as an object. A request the service refuses
  outright (``success: false``) answers ``Result: null`` in recorded replies, so a null
  ``Result`` is accepted when ``success`` is false, and only then.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import attrs
from jsonschema import Draft7Validator

from mfa_fsm.testing import CyberArkEmulator, EmulatorServer, EntrustEmulator
from mfa_fsm.testing._server import EmulatorReply, EmulatorRequest

SCHEMAS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vendor_response_schemas.json").read_text(encoding="utf-8")
)
#: Fault kinds whose reply is the emulator's real answer, so it is checked too.
CHECKED_FAULTS = frozenset({None, "slow", "replay_success", "stale_success"})


@attrs.frozen
class Mismatch:
    """One reply that does not validate."""

    provider: str
    method: str
    path: str
    status: int
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.provider} emulator's reply to {self.method} {self.path} (HTTP {self.status}) "
            f"does not match the vendor schema: {self.problem}"
        )


def _pattern(template: str, provider: str) -> re.Pattern[str]:
    body = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    # CyberArk's paths match in any case, as the service's do.
    return re.compile(body, re.IGNORECASE if provider == "cyberark" else 0)


def _routes(provider: str) -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    spec = SCHEMAS[provider]
    definitions = spec["definitions"]
    routes = []
    for template, methods in spec["paths"].items():
        for method, statuses in methods.items():
            compiled: dict[str, Any] = {}
            for status, schema in statuses.items():
                if schema is None:
                    compiled[status] = None
                else:
                    full = {**schema, "definitions": definitions}
                    Draft7Validator.check_schema(full)
                    compiled[status] = Draft7Validator(full)
            routes.append((_pattern(template, provider), method, compiled))
    return routes


ROUTES = {provider: _routes(provider) for provider in ("entrust", "cyberark")}


def _provider(emulator: EmulatorServer) -> str | None:
    if isinstance(emulator, EntrustEmulator):
        return "entrust"
    if isinstance(emulator, CyberArkEmulator):
        return "cyberark"
    return None


def problem_with(
    provider: str, method: str, path: str, status: int, body: bytes
) -> tuple[bool, str | None]:
    """Whether ``(method, path)`` is documented, and what is wrong with the reply, if anything."""
    for pattern, documented_method, statuses in ROUTES[provider]:
        if documented_method != method or not pattern.fullmatch(path):
            continue
        if str(status) not in statuses:
            return True, f"HTTP {status} is not a documented status ({sorted(statuses)})"
        validator = statuses[str(status)]
        if validator is None:
            return True, None if not body else "a body where the document gives none"
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return True, "the body is not JSON"
        if (
            provider == "cyberark"
            and isinstance(data, dict)
            and data.get("success") is False
            and data.get("Result", 0) is None
        ):
            data = {k: v for k, v in data.items() if k != "Result"}
        error = next(iter(sorted(validator.iter_errors(data), key=str)), None)
        if error is None:
            return True, None
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        return True, f"at {where}: {error.message}"
    return False, None


class ReplyChecker:
    """Collects the mismatches of every checked reply; thread-safe (emulators answer in
    their own threads)."""

    def __init__(self) -> None:
        self.mismatches: list[Mismatch] = []
        self.checked = 0
        self._lock = threading.Lock()

    def __call__(
        self,
        emulator: EmulatorServer,
        request: EmulatorRequest,
        reply: EmulatorReply,
        fault: str | None,
    ) -> None:
        provider = _provider(emulator)
        if provider is None or fault not in CHECKED_FAULTS:
            return
        path = request.path
        if provider == "cyberark":
            # The emulator can serve a second pod under a path prefix (``/pod2``).
            pod, _, rest = path[1:].partition("/")
            if "/" + pod.lower() in getattr(emulator, "_local_pods", ()):
                path = "/" + rest
        documented, problem = problem_with(provider, request.method, path, reply.status, reply.body)
        with self._lock:
            self.checked += documented
            if problem is not None:
                self.mismatches.append(
                    Mismatch(provider, request.method, request.path, reply.status, problem)
                )

    def take(self) -> list[Mismatch]:
        """Return and forget the mismatches seen so far."""
        with self._lock:
            found, self.mismatches = self.mismatches, []
        return found
