"""The CyberArk Identity authentication calls, as exchanges: requests built, replies parsed.

Two calls drive every login (vendor spec, "Start authentication" and "Advance
authentication"): ``POST /Security/StartAuthentication`` creates the MFA package, and
``POST /Security/AdvanceAuthentication`` answers, starts (``StartOOB``) or polls one mechanism
at a time. Both take JSON, need the native-client header, and answer the envelope that
:mod:`mfa_fsm.cyberark.replies` deciphers. The client holds no state: the base URL (after a
pod redirect), the session id and the cookies come from the flow's snapshot on every call.
Nor does it do I/O: each call is an exchange (:mod:`mfa_fsm.core.exchange`) that yields its
request and parses the reply the flow's sync or async driver sends back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from mfa_fsm.core.calls import checked_init
from mfa_fsm.core.errors import IdpReplyError
from mfa_fsm.core.exchange import Exchange, send
from mfa_fsm.core.http import HeaderPairs, HttpRequest, extra_headers
from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.retry import DEFAULT_RETRY, RetryPolicy
from mfa_fsm.cyberark.replies import Reply, decipher, parse_reply

START_PATH: Final = "/Security/StartAuthentication"
ADVANCE_PATH: Final = "/Security/AdvanceAuthentication"
#: "1.0 is the only supported version" (vendor spec).
API_VERSION: Final = "1.0"
#: Tells the service a native application (not a browser) is calling: the current vendor
#: spec and documents say ``X-IDAP-NATIVE-CLIENT: true``.
NATIVE_CLIENT_HEADER: Final = "X-IDAP-NATIVE-CLIENT"
#: The same header under the Centrify name, as the Centrify documents and samples send it
#: (and as the vendor's own StartOOB and Poll example exchange shows it); both are sent on
#: every call, since a tenant may still read either.
CENTRIFY_NATIVE_CLIENT_HEADER: Final = "X-CENTRIFY-NATIVE-CLIENT"

# host[:port][/path]: the vendor's PodFqdn may carry a path (``example.delinea.app/identity``).
_POD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?(?:/[A-Za-z0-9._~-]+)*")


def _strip_slash(url: str) -> str:
    return str(url).rstrip("/")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@checked_init
@attrs.frozen
class CyberArkConfig:
    """How to reach one CyberArk Identity tenant.

    ``base_url`` is the tenant URL (``https://abc1234.id.cyberark.cloud``); ``tenant_id`` is
    sent with StartAuthentication when given (else the URL or the login suffix names the
    tenant). A ``PodFqdn`` redirect is followed to ``{pod_scheme}://{PodFqdn}``, at most
    ``max_redirects`` times; ``pod_scheme`` is ``"https"`` except against a loopback emulator.
    In seconds: ``poll_interval`` (the vendor says once a second) and ``max_poll_backoff``
    shape polling; ``oob_lifetime`` is the hard deadline of one out-of-band challenge (the 5
    minutes an SMS code lives) and ``flow_lifetime`` that of the whole package (no source
    gives one).
    ``retry`` applies to the calls that are safe to repeat (StartAuthentication, which only
    opens a session, and Poll), within a few seconds of one step, as for Entrust; never to an
    Answer or a StartOOB. Past its budget a failed poll says when to try again
    (``retry_after``). ``resend_cooldown`` (seconds) is how long after a code or push was
    sent (StartOOB, RetryOOB) the flow refuses ``resend`` without calling CyberArk.
    ``extra_headers`` (a mapping of header names to values) is added to
    every call without writing a Transport (:func:`mfa_fsm.core.http.extra_headers`).
    """

    base_url: str = attrs.field(converter=_strip_slash)
    tenant_id: str | None = None
    pod_scheme: str = attrs.field(
        default="https", validator=attrs.validators.in_(("https", "http"))
    )
    max_redirects: int = attrs.field(default=4, validator=_non_negative)
    poll_interval: float = attrs.field(default=1.0, validator=_non_negative)
    max_poll_backoff: float = attrs.field(default=60.0, validator=_non_negative)
    oob_lifetime: float = attrs.field(default=300.0, validator=_non_negative)
    flow_lifetime: float = attrs.field(default=600.0, validator=_non_negative)
    retry: RetryPolicy = DEFAULT_RETRY
    extra_headers: HeaderPairs = attrs.field(default=(), converter=extra_headers)
    resend_cooldown: float = attrs.field(default=30.0, validator=_non_negative)

    @property
    def poll_schedule(self) -> PollSchedule:
        """The poll schedule these settings describe."""
        return PollSchedule(interval=self.poll_interval, max_backoff=self.max_poll_backoff)


def pod_url(pod_fqdn: str, scheme: str, path: str = START_PATH) -> str:
    """The base URL a ``PodFqdn`` names: ``{scheme}://{PodFqdn}``.

    A ``PodFqdn`` that already is a URL is taken only with the configured scheme, so a reply
    can never downgrade the client from https to http. Anything that is not
    ``host[:port][/path]`` is an :class:`IdpReplyError`.
    """
    given_scheme, sep, address = pod_fqdn.strip().partition("://")
    if not sep:
        given_scheme, address = scheme, pod_fqdn.strip()
    address = address.rstrip("/")
    if given_scheme.lower() != scheme or not _POD.fullmatch(address):
        raise IdpReplyError(
            f"the IdP redirected to a pod that is not a {scheme}:// host; check the tenant URL",
            path=path,
        )
    return f"{scheme}://{address}"


def same_base(first: str, second: str) -> bool:
    """Whether two base URLs name the same pod (scheme, host, port and path, any case)."""
    return first.rstrip("/").lower() == second.rstrip("/").lower()


class CyberArkClient:
    """Builds the two calls as exchanges; every reply is deciphered by
    :mod:`mfa_fsm.cyberark.replies`.

    Each method returns an :data:`~mfa_fsm.core.exchange.Exchange` of the parsed
    :class:`Reply` (``reply = yield from client.start(...)``). It raises :class:`IdpError`
    (HTTP 429/5xx, transient; or another non-2xx status), :class:`IdpReplyError`
    (unreadable reply) or :class:`TransportError` (network, thrown in by the driver). An
    authentication *failure* is no exception: it is a :class:`Reply` with ``success`` false.
    """

    def __init__(self, config: CyberArkConfig) -> None:
        self.config = config

    def start(
        self,
        base_url: str,
        user: str,
        *,
        tenant_id: str | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> Exchange[Reply]:
        """StartAuthentication for ``user`` at ``base_url``: a package, a redirect or a refusal."""
        body: dict[str, Any] = {"User": user, "Version": API_VERSION}
        if tenant_id:
            body["TenantId"] = tenant_id
        return self._post(base_url, START_PATH, body, cookies)

    def advance(
        self,
        base_url: str,
        *,
        session_id: str,
        mechanism_id: str,
        action: str,
        tenant_id: str | None = None,
        answer: str | dict[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> Exchange[Reply]:
        """AdvanceAuthentication: ``Answer``, ``StartOOB``, ``RetryOOB`` or ``Poll`` one
        mechanism (vendor spec, AdvanceAuthentication ``Action``)."""
        body: dict[str, Any] = {}
        if tenant_id:
            body["TenantId"] = tenant_id
        body |= {"SessionId": session_id, "MechanismId": mechanism_id, "Action": action}
        if answer is not None:
            body["Answer"] = answer
        return self._post(base_url, ADVANCE_PATH, body, cookies)

    def _post(
        self,
        base_url: str,
        path: str,
        body: dict[str, Any],
        cookies: Mapping[str, str] | None,
    ) -> Exchange[Reply]:
        headers = dict(self.config.extra_headers)
        headers |= {
            NATIVE_CLIENT_HEADER: "true",
            CENTRIFY_NATIVE_CLIENT_HEADER: "true",
            "Accept": "application/json",
        }
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        # ``path`` (not the full URL) names the call in errors and logs: no host, no query.
        response = yield from send(HttpRequest("POST", base_url + path, path, headers, body))
        reply = parse_reply(decipher(response, path))
        return attrs.evolve(reply, cookies=dict(response.cookies))
