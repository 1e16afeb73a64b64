"""Signing of Duo Auth API requests (HMAC over the canonical request and its ``Date``).

Duo authenticates every call but ``/ping`` with HTTP Basic credentials whose user name is the
integration key (``ikey``) and whose password is the hex HMAC of a canonical form of the
request, keyed with the integration's secret key (``skey``); the ``Date`` header is part of
what is signed (Duo Auth API v2 documentation, "Authentication"). Two canonical forms are in
use, named by ``duo_client``'s ``sig_version`` (``duo_client/client.py``, ``canonicalize``):

``version=2`` (the form Duo's public documentation describes)
    the lines ``date``, ``METHOD``, ``host`` (lower case), ``path`` and the parameters in
    canonical order, joined with ``\\n``. Parameters travel form-encoded (POST) or in the query
    string (GET). Duo accepts HMAC-SHA1 (the documentation's example) and HMAC-SHA512.
``version=5`` (what ``duo_client`` sends today, its ``Client.sig_version``)
    the same five lines, then the hex SHA-512 of the body and the hex SHA-512 of the
    ``X-Duo-*`` headers (lower-cased names and values, sorted, joined with NUL); always
    HMAC-SHA512. A POST carries its parameters as a JSON body (keys sorted, no spaces:
    ``Client.canon_json``) and no query string; a GET keeps them in the query string and signs
    an empty body.

mfa_fsm signs with version 5, like ``duo_client``; the emulator checks both versions.

Why this is written out here instead of calling ``duo_client``: its module-level ``sign()``
and ``canonicalize()`` can be called without its HTTP connection, but the library ships no
type information (``mypy --strict`` would need an exemption), bundles its own CA pinning and
``http.client`` transport that we would install and never use, and a request signed by one
function and checked by the same function proves nothing: the emulator must check signatures
with code that is pinned independently. The canonicalisation is about forty lines of the
standard library; the tests pin it against the published known answers of ``duo_client``'s
own test suite (``tests/test_client.py``: ``TestQueryParameters``, ``TestCanonicalize``,
``TestSign``).

The secret key is held only in :class:`DuoCredentials` (``repr=False``); no function here
formats it, or a signature made with it, into a message.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import attrs

from mfa_fsm.core.errors import InvalidInput

__all__ = [
    "SIGNATURE_VERSION",
    "DuoCredentials",
    "authorization_header",
    "canon_json",
    "canon_params",
    "canon_x_duo_headers",
    "canonicalize",
    "http_date",
    "signature",
    "signature_matches",
]

#: The canonical form mfa_fsm signs with (``duo_client``'s current ``sig_version``).
SIGNATURE_VERSION: Literal[5] = 5

SignatureVersion = Literal[2, 5]
#: Parameters as Duo signs them: a name to one value or to several (repeated names).
Params = Mapping[str, str | Sequence[str]]

_DIGESTS: dict[str, Callable[..., Any]] = {"sha1": hashlib.sha1, "sha512": hashlib.sha512}


@attrs.frozen
class DuoCredentials:
    """An Auth API application's keys, from the Duo Admin Panel's application page.

    ``integration_key`` (``ikey``, ``DI`` + 18 characters) names the application and is sent
    in every request; ``secret_key`` (``skey``, 40 characters) signs requests and never
    leaves this object: it is not in the repr, in any log line or error, or in a snapshot.
    ``api_hostname`` (``api-XXXXXXXX.duosecurity.com``) is signed as the request's host.
    """

    integration_key: str
    secret_key: str = attrs.field(repr=False)
    api_hostname: str

    def __attrs_post_init__(self) -> None:
        for name in ("integration_key", "secret_key", "api_hostname"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isascii():
                raise InvalidInput(name, "must be a non-empty ASCII string from the Admin Panel")


def http_date(epoch_seconds: float) -> str:
    """The ``Date`` header for ``epoch_seconds`` as Duo signs it (RFC 2822, ``-0000``)."""
    return email.utils.formatdate(epoch_seconds)


def _quote(value: str) -> str:
    # RFC 3986 unreserved characters stay as they are, everything else is percent-encoded
    # from its UTF-8 bytes: the OAuth 1.0 rule (RFC 5849 section 3.4.1.3.2) Duo follows.
    return quote(value, safe="~")


def canon_params(params: Params) -> str:
    """The parameters in Duo's canonical order: ``name=value`` pairs joined with ``&``.

    Names and values are percent-encoded (RFC 5849 section 3.4.1.3.2: only ``A-Z a-z 0-9
    - . _ ~`` stay), pairs sorted by encoded name, the values of a repeated name sorted too.
    """
    pairs: list[str] = []
    for key, values in sorted((_quote(k), v) for k, v in params.items()):
        listed = [values] if isinstance(values, str) else list(values)
        pairs.extend(f"{key}={value}" for value in sorted(_quote(v) for v in listed))
    return "&".join(pairs)


def canon_json(payload: Mapping[str, Any]) -> bytes:
    """A POST body as version 5 sends it: JSON with sorted keys and no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def canon_x_duo_headers(headers: Mapping[str, str] | None) -> str:
    """Hex SHA-512 over the ``X-Duo-*`` headers (version 5): lower-cased, sorted, NUL-joined.

    Raises :class:`InvalidInput` for a header that does not start with ``X-Duo-``, that
    contains NUL, or that repeats (names compared case-insensitively).
    """
    lowered: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        if not key.startswith("x-duo-") or "\x00" in key or "\x00" in value:
            raise InvalidInput("duo_headers", "each must be named X-Duo-... and contain no NUL")
        if key in lowered:
            raise InvalidInput("duo_headers", "a header name is given twice")
        lowered[key] = value
    parts = [item for key in sorted(lowered) for item in (key, lowered[key])]
    return hashlib.sha512("\x00".join(parts).encode()).hexdigest()


def canonicalize(
    method: str,
    host: str,
    path: str,
    params: Params,
    date: str,
    *,
    version: SignatureVersion = SIGNATURE_VERSION,
    body: bytes = b"",
    duo_headers: Mapping[str, str] | None = None,
) -> str:
    """The canonical request that is signed (see the module docstring for both versions).

    ``params`` are the query-string or form parameters (a version 5 POST has none: its
    parameters are in ``body``). ``body`` and ``duo_headers`` count only for version 5.
    """
    lines = [date, method.upper(), host.lower(), path, canon_params(params)]
    if version == 5:
        lines.append(hashlib.sha512(body).hexdigest())
        lines.append(canon_x_duo_headers(duo_headers))
    elif version != 2:
        raise InvalidInput("version", "Duo signature versions 2 and 5 are supported")
    return "\n".join(lines)


def signature(
    secret_key: str, canonical: str, *, digest: Literal["sha1", "sha512"] = "sha512"
) -> str:
    """Hex HMAC of ``canonical`` keyed with ``secret_key`` (SHA-512 unless told otherwise)."""
    return hmac.new(secret_key.encode(), canonical.encode(), _DIGESTS[digest]).hexdigest()


def authorization_header(integration_key: str, hex_signature: str) -> str:
    """``Basic base64(ikey:signature)``, the ``Authorization`` header Duo expects."""
    token = base64.b64encode(f"{integration_key}:{hex_signature}".encode()).decode()
    return f"Basic {token}"


def signature_matches(secret_key: str, canonical: str, presented: str) -> bool:
    """Whether ``presented`` (hex) is the HMAC-SHA512 or HMAC-SHA1 of ``canonical``.

    Compared in constant time (``hmac.compare_digest``); used by the emulator.
    """
    candidate = presented.lower().encode()
    return any(
        hmac.compare_digest(signature(secret_key, canonical, digest=name).encode(), candidate)
        for name in ("sha512", "sha1")
    )
