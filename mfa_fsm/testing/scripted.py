"""A transport that answers from a script, for unit tests of flows without any server."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from mfa_fsm.core.errors import TransportError
from mfa_fsm.core.transport import HttpRequest, HttpResponse

Reply = HttpResponse | Exception | Callable[[HttpRequest], HttpResponse]


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    """An HTTP response whose body is ``data`` as JSON."""
    return HttpResponse(
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
        body=json.dumps(data).encode(),
    )


class ScriptedTransport:
    """Answers each request with the next scripted reply and keeps every request it saw.

    A reply may be an :class:`HttpResponse`, an exception to raise (a
    :class:`TransportError` imitates the network failing), or a function of the request.
    Running out of replies raises ``AssertionError``: the flow made a call the test did not
    expect. It is an asynchronous transport as well (``send_async``), for ``send_async``.
    """

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.requests: list[HttpRequest] = []

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        self.replies.extend(replies)

    def send(self, request: HttpRequest) -> HttpResponse:
        """Record ``request`` and answer with the next scripted reply."""
        self.requests.append(request)
        if not self.replies:
            raise AssertionError(f"unexpected IdP call to {request.path}")
        reply = self.replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    async def send_async(self, request: HttpRequest) -> HttpResponse:
        """:meth:`send`, awaited (the same script, the same record)."""
        return self.send(request)


def network_down(path: str = "") -> TransportError:
    """The error a transport raises when the connection is refused."""
    return TransportError("could not reach the IdP (ConnectionError)", path=path)
