"""CyberArk Identity replies turned into values: pure functions, no I/O.

Both ``/Security/StartAuthentication`` and ``/Security/AdvanceAuthentication`` answer the same
envelope (``success``, ``Result``, ``Message``, ``MessageID``, ``Exception``, ``ErrorID``,
``ErrorCode``, ``IsSoftError``, ``InnerExceptions``), HTTP 200 even when authentication fails;
the flow's state is in ``Result.Summary``. Field names are those of the vendor's OpenAPI spec
(``SecurityStartAuthentication``, ``SecurityAdvanceAuthentication``) and its mechanism
examples. Unknown fields are ignored and unknown ``Summary`` values kept as they are, for the
flow to refuse; a value of the wrong JSON type is an :class:`IdpReplyError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import attrs

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.replies import Fields, json_body, refuse_transient
from mfa_fsm.core.transport import HttpResponse

#: ``AnswerType`` values: in-band, out-of-band that also takes a typed code, pure out-of-band.
TEXT: Final = "Text"
START_TEXT_OOB: Final = "StartTextOob"
START_OOB: Final = "StartOob"
ANSWER_TYPES: Final = frozenset({TEXT, START_TEXT_OOB, START_OOB})

#: ``Summary`` values of a successful reply (vendor spec and research notes).
NEW_PACKAGE: Final = "NewPackage"
START_NEXT_CHALLENGE: Final = "StartNextChallenge"
OOB_PENDING: Final = "OobPending"
LOGIN_SUCCESS: Final = "LoginSuccess"
NONCOMMITAL_SUCCESS: Final = "NoncommitalSuccess"  # the vendor's spelling

#: The cookie that carries the session after ``LoginSuccess``.
AUTH_COOKIE: Final = ".ASPXAUTH"

# Where each mechanism shows the part of the address it will use (vendor examples).
_ADDRESS_FIELDS: Final = (
    "PartialDeviceAddress",  # SMS
    "MaskedEmailAddress",  # EMAIL
    "PartialAddress",  # EMAIL (domain only)
    "PartialPhoneNumber",  # PF
)


@attrs.frozen
class Mechanism:
    """One way of answering a challenge, as a package offers it.

    ``id`` is the ``MechanismId`` to send back; ``answer_type`` decides how it is driven
    (never the ``name``: old tenants send ``Text`` for SMS and EMAIL). ``detail`` is the
    partial address the user recognises (``6789``, ``***@example.com``); ``questions`` and
    ``part_ids`` are a security question's ``MechanismParts``; ``image`` a QR code's data URL.
    """

    id: str
    name: str
    answer_type: str
    label: str
    prompt: str
    detail: str | None = None
    questions: tuple[str, ...] = ()
    part_ids: tuple[str, ...] = ()
    enrolled: bool = True
    image: str | None = None


Package = tuple[tuple[Mechanism, ...], ...]


@attrs.frozen
class Login:
    """What ``LoginSuccess`` carries. Tokens are secrets: never in a repr."""

    user_id: str | None
    display_name: str | None
    user: str | None
    pod_fqdn: str | None
    token: str | None = attrs.field(repr=False)
    auth: str | None = attrs.field(repr=False)
    token_lifetime: float | None = None
    email: str | None = None


@attrs.frozen
class Reply:
    """One deciphered reply of either endpoint.

    ``success`` false means the package is dead (wrong answer, denied or expired OOB, dead
    session: CyberArk does not say which). ``request_refused`` marks the other kind of
    ``success: false``, where ``Result`` is null: the service refused the request itself.
    ``cookies`` are those the HTTP reply set (filled in by the client).
    """

    success: bool
    summary: str | None = None
    session_id: str | None = attrs.field(default=None, repr=False)
    tenant_id: str | None = None
    challenges: Package = ()
    pod_fqdn: str | None = None
    federated: bool = False
    generated_auth_value: str | None = None
    client_message: str | None = None
    login: Login | None = None
    request_refused: bool = False
    error_id: str | None = None
    error_code: str | None = None
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def is_redirect(self) -> bool:
        """A StartAuthentication reply that only names another pod to ask (``PodFqdn``)."""
        # Successful logins name their pod too; only a reply with nothing else redirects.
        return (
            self.success
            and self.pod_fqdn is not None
            and not self.challenges
            and self.session_id is None
            and self.login is None
        )


def decipher(response: HttpResponse, path: str) -> Fields:
    """The envelope of a reply as :class:`Fields`; raise the typed error any other reply means.

    HTTP 429/5xx → transient :class:`IdpError` (with ``retry_after``); another non-2xx status
    → :class:`IdpError`; an empty, HTML or non-JSON body, or JSON without a boolean
    ``success`` → :class:`IdpReplyError`. The IdP's ``Message`` is never put in an error.
    """
    refuse_transient(response, path)
    data = json_body(response, path)
    if not 200 <= response.status < 300:
        code = data.get("ErrorCode") if isinstance(data, Mapping) else None
        raise IdpError(
            f"the IdP refused {path} (HTTP {response.status}); check the base URL and tenant",
            path=path,
            status=response.status,
            error_code=code if isinstance(code, str) else None,
        )
    envelope = Fields(data, path, "envelope")
    if not isinstance(envelope.data.get("success"), bool):
        raise IdpReplyError(
            f"the IdP's reply from {path} has no 'success' flag; is the base URL a CyberArk "
            "Identity tenant?",
            path=path,
            status=response.status,
        )
    return envelope


def parse_reply(envelope: Fields) -> Reply:
    """Read the ``Result`` of an envelope from either endpoint."""
    success = envelope.flag("success")
    error_id = envelope.text("ErrorID")
    error_code = _text_or_number(envelope, "ErrorCode")
    result = envelope.child("Result")
    if result is None:
        return Reply(
            success=success,
            request_refused=not success,
            error_id=error_id,
            error_code=error_code,
        )
    summary = result.text("Summary")
    login = _login(result) if success and summary == LOGIN_SUCCESS else None
    return Reply(
        success=success,
        summary=summary,
        session_id=result.text("SessionId"),
        tenant_id=result.text("TenantId"),
        challenges=_package(result),
        pod_fqdn=result.text("PodFqdn") or None,
        federated=bool(result.text("IdpRedirectUrl")),
        generated_auth_value=_text_or_number(result, "GeneratedAuthValue"),
        client_message=result.text("ClientMessage"),
        login=login,
        error_id=error_id,
        error_code=error_code,
    )


def _text_or_number(fields: Fields, key: str) -> str | None:
    # Number matching values and error codes are strings in the vendor's examples, but a
    # number is read as the same thing rather than refused.
    value = fields.data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fields.text(key)


def _package(result: Fields) -> Package:
    challenges = []
    for challenge in result.objects("Challenges"):
        mechanisms = tuple(_mechanism(m) for m in challenge.objects("Mechanisms"))
        if not mechanisms:
            raise IdpReplyError("a challenge offers no mechanism", path=result.path)
        challenges.append(mechanisms)
    return tuple(challenges)


def _mechanism(fields: Fields) -> Mechanism:
    mechanism_id, name = fields.text("MechanismId"), fields.text("Name")
    answer_type = fields.text("AnswerType")
    if not mechanism_id or not name or not answer_type:
        raise IdpReplyError(
            "a mechanism lacks its MechanismId, Name or AnswerType", path=fields.path
        )
    questions: list[str] = []
    part_ids: list[str] = []
    multipart = fields.child("MultipartMechanism")
    for part in multipart.objects("MechanismParts") if multipart else ():
        uid, text = part.text("Uuid"), part.text("QuestionText")
        if not uid or text is None:
            raise IdpReplyError("a security question lacks its Uuid or text", path=fields.path)
        part_ids.append(uid)
        questions.append(text)
    question = fields.text("Question")
    if not questions and question:
        questions.append(question)
    label = fields.text("PromptSelectMech") or name
    enrolled = fields.data.get("Enrolled")
    return Mechanism(
        id=mechanism_id,
        name=name,
        answer_type=answer_type,
        label=label,
        prompt=fields.text("PromptMechChosen") or label,
        detail=next((d for d in map(fields.text, _ADDRESS_FIELDS) if d), None),
        questions=tuple(questions),
        part_ids=tuple(part_ids),
        enrolled=fields.flag("Enrolled") if enrolled is not None else True,
        image=fields.text("Image") if name == "QR" else None,
    )


def _lifetime(fields: Fields, key: str) -> float | None:
    # json.loads reads NaN and Infinity; neither is a lifetime, and NaN would make the
    # completed snapshot unequal to itself.
    seconds = fields.number(key)
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise IdpReplyError(f"the IdP's {key} is not a number of seconds", path=fields.path)
    return seconds


def _login(result: Fields) -> Login:
    # The CyberArk/Delinea platform form of LoginSuccess carries its token only in
    # ``OAuthTokens`` (``access_token``, ``expires_in`` in seconds, RFC 6749 section 5.1),
    # with no ``Token``, ``Auth`` or ``.ASPXAUTH``; the classic fields win when both come.
    oauth = result.child("OAuthTokens")
    token = result.text("Token") or (oauth.text("access_token") if oauth else None)
    lifetime = _lifetime(result, "TokenLifetime")
    if lifetime is None and oauth is not None:
        lifetime = _lifetime(oauth, "expires_in")
    return Login(
        user_id=result.text("UserId"),
        display_name=result.text("DisplayName"),
        user=result.text("User"),
        pod_fqdn=result.text("PodFqdn"),
        token=token or None,
        auth=result.text("Auth") or None,
        token_lifetime=lifetime,
        email=result.text("EmailAddress"),
    )
