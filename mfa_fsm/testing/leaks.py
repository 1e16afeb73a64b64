"""Helpers that prove secrets stay secret: record every secret a flow handles, then search
logs, reprs and error messages for them.

Use :class:`SecretRecorder` as the flow's transport (it wraps a real one), run the flow, then
:func:`find_leaks` over whatever text could reach a person: captured log events, exception
messages, ``repr`` of views and snapshots.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from typing import Any

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.http import AsyncTransport
from mfa_fsm.core.transport import HttpRequest, HttpResponse, RequestsTransport, Transport

#: JSON keys whose values are secrets in any IdP's API (requests and replies).
SECRET_KEYS = frozenset(
    {
        "response",
        "authToken",
        "token",
        "answer",
        "Answer",
        "SessionId",
        "Token",
        "Auth",
        "password",
        "newPassword",
        # Duo Auth API v2
        "passcode",
        "txid",
        "trusted_device_token",
    }
)
#: Values this short are too common to search for without false alarms ("1", "OK").
MIN_SECRET_LENGTH = 4
#: Secrets up to this length (and all-digit ones) must stand alone to count as a leak.
SHORT_SECRET = 8


class SecretRecorder:
    """A transport wrapper that remembers every secret it carries, in either direction.

    It is a blocking :class:`Transport` over ``inner`` (a ``RequestsTransport`` by default)
    and, given ``inner_async`` (an :class:`AsyncTransport` such as ``HttpxTransport``), an
    asynchronous one too, so one recorder serves ``send`` and ``send_async`` alike.
    """

    def __init__(
        self, inner: Transport | None = None, *, inner_async: AsyncTransport | None = None
    ) -> None:
        self.inner = inner or RequestsTransport()
        self.inner_async = inner_async
        self.secrets: set[str] = set()

    def send(self, request: HttpRequest) -> HttpResponse:
        """Forward ``request``, noting the secrets in it and in the reply."""
        self._note_request(request)
        return self._note_response(self.inner.send(request))

    async def send_async(self, request: HttpRequest) -> HttpResponse:
        """Forward ``request`` to ``inner_async``, noting the secrets in it and in the reply."""
        if self.inner_async is None:
            raise UsageError("this SecretRecorder has no inner_async transport for send_async")
        self._note_request(request)
        return self._note_response(await self.inner_async.send_async(request))

    def _note_request(self, request: HttpRequest) -> None:
        authorization = request.headers.get("Authorization")
        if authorization:
            self._add(authorization)
            self._add(authorization.removeprefix("Bearer "))
        self._collect(request.json)

    def _note_response(self, response: HttpResponse) -> HttpResponse:
        for value in response.cookies.values():
            self._add(value)
        with contextlib.suppress(ValueError):  # not JSON: nothing to collect
            self._collect(json.loads(response.body))
        return response

    def add(self, *values: str) -> None:
        """Register secrets the test itself knows (passwords, codes it typed)."""
        for value in values:
            self._add(value)

    def _add(self, value: Any) -> None:
        add_secret(self.secrets, value)

    def _collect(self, data: Any) -> None:
        collect_secrets(data, self.secrets)


def add_secret(sink: set[str], value: Any) -> None:
    """Add ``value`` to ``sink`` if it is a string long enough to search for."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        sink.add(value)


def collect_secrets(data: Any, sink: set[str]) -> None:
    """Add to ``sink`` every value under a :data:`SECRET_KEYS` key, at any depth of ``data``."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in SECRET_KEYS:
                add_secret(sink, value)
            collect_secrets(value, sink)
    elif isinstance(data, list):
        for item in data:
            collect_secrets(item, sink)


def find_leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """The secrets that appear in any of ``texts`` (empty when nothing leaked).

    A short or all-digit secret (an OTP) counts only where it stands alone, not inside a
    longer run of letters and digits: ``"482913"`` inside a hex flow id is chance, not a leak.
    """
    corpus = "\n".join(texts)
    leaks = []
    for secret in set(secrets):
        if secret.isdigit() or len(secret) <= SHORT_SECRET:
            pattern = rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])"
            if re.search(pattern, corpus):
                leaks.append(secret)
        elif secret in corpus:
            leaks.append(secret)
    return sorted(leaks)
