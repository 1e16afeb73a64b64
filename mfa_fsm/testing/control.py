"""A small client for the emulators' ``/_emulator/`` control routes, over plain HTTP.

For demos, scripts and tests in other processes; in-process tests call the emulator's
methods directly. Uses the standard library only.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

#: Control calls go to loopback emulators; a short timeout keeps a dead one from hanging.
TIMEOUT = 5.0


def _open(url: str, data: bytes | None = None, method: str = "GET") -> Any:
    # Only plain HTTP to loopback: this is what makes urlopen safe here (ruff S310).
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError("control routes are only for emulators on loopback")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:  # noqa: S310
        body = reply.read()
    return json.loads(body) if body else None


def post(url: str, data: Any = None) -> Any:
    """POST ``data`` as JSON to a control route; return the parsed reply."""
    body = json.dumps(data).encode() if data is not None else b""
    return _open(url, body, "POST")


def get(url: str) -> Any:
    """GET a control route; return the parsed reply."""
    return _open(url)


def entrust_otp(base_url: str, user: str) -> str:
    """The last OTP the Entrust emulator generated for ``user``."""
    reply = get(f"{base_url}/_emulator/otp/{user}")
    return str(reply.get("otp") if isinstance(reply, dict) else reply)


def entrust_answer(base_url: str, user: str) -> str:
    """The expected answer to ``user``'s open challenge at the Entrust emulator."""
    reply = get(f"{base_url}/_emulator/answer/{user}")
    return str(reply.get("response") if isinstance(reply, dict) else reply)
