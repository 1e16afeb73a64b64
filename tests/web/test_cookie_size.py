"""Sealed state always fits a cookie (issue 11, item 9).

Every state of every provider, filled with the largest content the vendor documents allow,
is sealed and set as the blueprint's flow cookie; the whole ``Set-Cookie`` value (name,
value, Path, Secure, HttpOnly, SameSite, Max-Age, Expires, as the blueprint sets them) must
stay within a browser's cookie size, or the step must fail with ``SealedStateTooLarge`` and a
page that offers a new start, never a cookie the browser silently drops.

The vendor documents bound lists by enumerations and give examples of text, but give no
maximum length for most strings; where they give none, the constants below take a generous
figure and say so.
"""

from __future__ import annotations

import base64
import itertools
import random
import secrets
import string
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from mfa_fsm import (
    CyberArkConfig,
    MemoryStore,
    SealedEngine,
    SealedState,
    SealedStateTooLarge,
    StoreLedger,
)
from mfa_fsm.core.snapshot import Challenge, Choice, Result, Snapshot, handed_off
from mfa_fsm.cyberark.flow import CyberArkContext
from mfa_fsm.cyberark.replies import Mechanism
from mfa_fsm.duo.flow import DuoContext
from mfa_fsm.entrust.flow import EntrustContext
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.cyberark import UserMechanism as EmulatedMechanism
from mfa_fsm.web.core import Carry
from tests.support.web import Visitor, heading, make_app

#: What a browser keeps of one cookie, name, value and attributes together: RFC 6265 section
#: 6.1 asks for "at least 4096 bytes"; werkzeug (and so Flask's MAX_COOKIE_SIZE) warns above
#: 4,093, the figure the blueprint checks against.
COOKIE_LIMIT = 4093

#: IdP tokens: issue 11 asks for 600-character tokens; Entrust's spec types ``token`` and
#: ``authToken`` as strings with no maximum (OpenAPI v5.46, UserAuthenticateQueryResponse).
TOKEN_CHARS = 600
#: mfa_fsm's own bound on user ids (``mfa_fsm.core.inputs.MAX_ID``): the longest a start takes.
USER_ID_CHARS = 255
#: A user id of that length that does not compress (the flow cookie is zlib-compressed
#: before it is signed): fixed, so the figures printed stay comparable.
USER_ID = "".join(random.Random(USER_ID_CHARS).choices(string.ascii_letters, k=USER_ID_CHARS))  # noqa: S311 - test data

# -- Entrust IDaaS Authentication API v5.46 (entrust-idaas-authentication-openapi.json) --------
#: UserAuthenticateQueryResponse.availableSecondFactor: every value of its enum.
ENTRUST_AUTHENTICATORS = (
    "MACHINE", "PASSWORD", "EXTERNAL", "KBA", "TEMP_ACCESS_CODE", "OTP", "GRID", "TOKEN",
    "TOKENCR", "TOKENPUSH", "FIDO", "SMARTCREDENTIALPUSH", "PASSWORD_AND_SECONDFACTOR",
    "SMART_LOGIN", "IDP", "PASSKEY", "IDP_AND_SECONDFACTOR", "USER_CERTIFICATE", "FACE",
    "PASSTHROUGH", "MAGICLINK",
)  # fmt: skip
#: AuthenticatedResponse.otpdeliveryType: every value of its enum.
ENTRUST_DELIVERIES = ("EMAIL", "SMS", "VOICE", "WECHAT", "WHATSAPP")
#: KbaChallenge.userQuestions has no maxItems and UserQuestion.question no maxLength: we
#: take 5 questions of 255 characters.
KBA_QUESTIONS, QUESTION_CHARS = 5, 255
#: GridChallenge.challenge (cells to answer) has no maxItems: we take 10 cells.
GRID_CELLS = 10

# -- CyberArk Identity (cyberark-identity.md, sections 3 and 4; cyberark-identity-openapi) ------
#: StartAuthentication ``Result.Challenges``: "array (0, 1 or 2 elements)".
CYBERARK_CHALLENGES = 2
#: Mechanism ``Name`` values the documents list (section 4), each offered in every challenge.
CYBERARK_MECHANISMS = (
    "UP", "SQ", "RESET", "SMS", "EMAIL", "OATH", "OTP", "PF", "QR", "U2F", "DUO", "OOBAUTHPIN",
)  # fmt: skip
#: ``MechanismId`` as in the OpenAPI examples ("xmbeXzVI8v15ERTUKh7TXuyaY133cLhpLkSythzHIA1").
MECHANISM_ID_CHARS = 43
#: ``PromptMechChosen`` / ``PromptSelectMech`` have no documented maximum; the longest example
#: is about 150 characters, and we take twice that for a localised tenant.
PROMPT_CHARS, LABEL_CHARS = 300, 80
#: ``SessionId`` is opaque with no documented length: we take 200 characters.
SESSION_ID_CHARS = 200
#: The ``Image`` of a ``QR`` mechanism ("data:image/png;base64,..."): no size is documented;
#: a QR code of a ~150-character link drawn at about 300x300 pixels is 1-3 KiB of PNG, and
#: we take 2 KiB. It is random-looking, so nothing compresses it.
QR_PNG_BYTES = 2048

# -- Duo Auth API v2 (the documentation's /preauth ``devices``, see mfa_fsm/duo/replies.py) ---
#: ``devices`` has no documented maximum: we take 5 phones, each with every capability the
#: flow drives (push, phone, sms) and ``mobile_otp``; device ids are 20 characters.
DUO_DEVICES, DUO_DEVICE_ID_CHARS = 5, 20

STATES = (
    "AwaitingFirstFactor",
    "AwaitingSecondFactor",
    "SecondFactorSelected",
    "OobPending",
    "Completed",
    "Failed",
)
NOW = 1_800_000_000.0


def text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """``length`` random characters: the worst case for compression."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def words(length: int) -> str:
    """Prose of ``length`` characters, as prompts and questions are."""
    sentence = "Please follow the instructions sent to your registered device to proceed. "
    return (sentence * (length // len(sentence) + 1))[:length]


def _entrust_context() -> EntrustContext:
    return EntrustContext(
        first_factor="EXTERNAL",
        token=text(TOKEN_CHARS),
        first_factor_token=text(TOKEN_CHARS),
        token_expires_at=NOW + 900,
        factor="KBA",
        kba_id=str(uuid.uuid4()),
        kba_question_ids=tuple(str(uuid.uuid4()) for _ in range(KBA_QUESTIONS)),
        remaining_attempts=dict.fromkeys(ENTRUST_AUTHENTICATORS, 5),
        polls=120,
        idp_time=NOW,
    )


def _entrust_choices() -> tuple[Choice, ...]:
    return tuple(
        Choice(
            id=name,
            kind="otp",
            label=words(LABEL_CHARS),
            deliveries=ENTRUST_DELIVERIES,
            default_delivery="SMS",
            detail=words(40),
        )
        for name in ENTRUST_AUTHENTICATORS
    )


def _cyberark_context(qr_image: bool) -> CyberArkContext:
    def mechanism(name: str) -> Mechanism:
        image = None
        if name == "QR" and qr_image:
            image = "data:image/png;base64," + base64.b64encode(
                secrets.token_bytes(QR_PNG_BYTES)
            ).decode("ascii")
        return Mechanism(
            id=text(MECHANISM_ID_CHARS),
            name=name,
            answer_type="StartTextOob",
            label=words(LABEL_CHARS),
            prompt=words(PROMPT_CHARS),
            detail=words(40),
            questions=tuple(words(QUESTION_CHARS) for _ in range(KBA_QUESTIONS))
            if name == "SQ"
            else (),
            part_ids=tuple(str(uuid.uuid4()) for _ in range(KBA_QUESTIONS)) if name == "SQ" else (),
            image=image,
        )

    package = tuple(
        tuple(mechanism(name) for name in CYBERARK_MECHANISMS) for _ in range(CYBERARK_CHALLENGES)
    )
    return CyberArkContext(
        base_url="https://" + text(40).lower() + ".my.idaptive.app",
        tenant_id=text(12),
        session_id=text(SESSION_ID_CHARS),
        package=package,
        index=1,
        mechanism_id=package[1][0].id,
        answer_type="StartTextOob",
        cookies={"ASP.NET_SessionId": text(24), "__cf_bm": text(TOKEN_CHARS // 4)},
        oob_started_at=NOW,
        last_answer_at=NOW,
        polls=120,
        redirects=2,
        pod_fqdn=text(40).lower() + ".my.idaptive.app",
    )


def _cyberark_choices(context: CyberArkContext) -> tuple[Choice, ...]:
    return tuple(
        Choice(id=m.id, kind="otp", label=m.label, detail=m.detail) for m in context.current
    )


def _duo_choices() -> tuple[Choice, ...]:
    choices = []
    for _ in range(DUO_DEVICES):
        device = text(DUO_DEVICE_ID_CHARS, string.ascii_uppercase + string.digits)
        label = "iOS (XXX-XXX-" + text(4, string.digits) + ")"
        choices += [
            Choice(id=f"push:{device}", kind="push", label=f"Duo Push to {label}"),
            Choice(id=f"phone:{device}", kind="call", label=f"Phone call to {label}"),
            Choice(
                id=f"sms:{device}",
                kind="otp",
                label=f"Passcodes by text message to {label}",
                deliveries=("SMS",),
                default_delivery="SMS",
                detail=label,
            ),
        ]
    return (*choices, Choice(id="passcode", kind="token", label="Passcode from Duo Mobile"))


def maximal(provider: str, state: str, *, qr_image: bool = False) -> Snapshot:
    """A snapshot of ``provider`` in ``state`` holding the largest content the documents allow:
    every field a flow may fill in any state that is not final, filled to its maximum."""
    context: Any
    if provider == "entrust":
        context, choices = _entrust_context(), _entrust_choices()
    elif provider == "cyberark":
        context = _cyberark_context(qr_image)
        choices = _cyberark_choices(context)
    else:
        context, choices = (
            DuoContext(factor="push:" + "D" * 20, txid=str(uuid.uuid4())),
            (_duo_choices()),
        )
    challenges = {
        "AwaitingFirstFactor": Challenge(
            factor=text(MECHANISM_ID_CHARS), kind="password", prompt=words(PROMPT_CHARS)
        ),
        "SecondFactorSelected": Challenge(
            factor="KBA",
            kind="kba",
            prompt=words(PROMPT_CHARS),
            questions=tuple(words(QUESTION_CHARS) for _ in range(KBA_QUESTIONS)),
            cells=tuple(
                f"{column}{row}" for column, row in zip("ABCDEFGHIJ", range(1, 11), strict=True)
            )[:GRID_CELLS],
            attempts_left=5,
        ),
        "OobPending": Challenge(
            factor="TOKENPUSH",
            kind="push",
            prompt=words(PROMPT_CHARS),
            number_to_match="42",
            accepts_code=True,
        ),
    }
    result = None
    if state == "Completed":
        result = Result(
            user_id=USER_ID,
            display_name=words(LABEL_CHARS),
            token=text(TOKEN_CHARS * 2),
            expires_at=NOW + 3600,
            cookies={".ASPXAUTH": text(TOKEN_CHARS), "ASP.NET_SessionId": text(24)},
        )
    return Snapshot(
        provider=provider,
        flow_id=uuid.uuid4().hex,  # what start() makes
        user_id=USER_ID,
        state=state,
        version=7,
        created_at=NOW,
        deadline=NOW + 900,
        context=context,
        choices=choices,
        challenge=challenges.get(state),
        next_poll_at=NOW + 2 if state == "OobPending" else None,
        failure="expired" if state == "Failed" else None,
        failure_detail=words(200) if state == "Failed" else None,
        result=result,
    )


@pytest.fixture(scope="module")
def app() -> Flask:
    """The blueprint as an application mounts it, over a SealedEngine with a ledger."""
    sealed = SealedState({"k1": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
    return make_app(SealedEngine(sealed, []))


def flow_cookie_header(app: Flask, snapshot: Snapshot, expected_version: int | None = None) -> str:
    """The Set-Cookie value the blueprint sends for ``snapshot``: sealed by the engine's
    SealedState, carried with the longest "who checked the first factor" line a user id
    makes and that user id itself ("Signing in as ..."). Raises SealedStateTooLarge where
    the blueprint refuses it."""
    web = app.blueprints["mfa_fsm"].core  # type: ignore[attr-defined]
    sealed: SealedState = web.flows.engine.sealed
    token = sealed.seal(snapshot, expected_version=expected_version)
    who = f"{snapshot.user_id}'s password, checked by example.com password"
    handle = secrets.token_urlsafe(9)
    with app.test_request_context(f"/login/f/{handle}/response", method="POST"):
        carry = Carry(snapshot.flow_id, token, who, user=snapshot.user_id)
        header = web.flow_cookie(handle, carry)
    return str(header)


def cases() -> Iterator[tuple[str, str, bool]]:
    for provider, state in itertools.product(("entrust", "cyberark", "duo"), STATES):
        yield provider, state, False
        if provider == "cyberark":
            yield provider, state, True


@pytest.mark.parametrize(
    ("provider", "state", "qr_image"),
    list(cases()),
    ids=[f"{p}-{s}{'-qr' if q else ''}" for p, s, q in cases()],
)
def test_every_state_with_maximal_content_fits_a_cookie_or_is_refused(
    app: Flask, provider: str, state: str, qr_image: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flow cookie of every state, filled to the documents' limits, fits in 4,093 bytes;
    only a CyberArk package that carries a QR image (a few KiB of PNG) does not, and sealing
    it is refused with SealedStateTooLarge before anything is recorded."""
    snapshot = maximal(provider, state, qr_image=qr_image)
    expected = None
    if state == "Completed":
        # The completing request hands the result off before it sets the cookie (the full
        # result is sealed for the engine's answer, exempt from the limit, never a cookie).
        web = app.blueprints["mfa_fsm"].core  # type: ignore[attr-defined]
        assert web.flows.engine.sealed.seal(snapshot)
        snapshot, expected = handed_off(snapshot, now=NOW), snapshot.version
    refused = qr_image and not snapshot.is_final
    if refused:
        with pytest.raises(SealedStateTooLarge) as raised:
            flow_cookie_header(app, snapshot, expected)
        assert raised.value.size > raised.value.limit
        return
    header = flow_cookie_header(app, snapshot, expected)
    with capsys.disabled():
        print(f"\n{provider} {state}{' +QR' if qr_image else ''}: {len(header)}-byte Set-Cookie")
    assert len(header) <= COOKIE_LIMIT
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=3600"):
        assert attribute in header


def test_the_cookie_check_counts_name_and_attributes(app: Flask) -> None:
    """A token that SealedState lets through but whose cookie (with a very long flow id and
    first-factor line) passes 4,093 bytes is refused by the blueprint itself."""
    web = app.blueprints["mfa_fsm"].core  # type: ignore[attr-defined]
    handle = secrets.token_urlsafe(9)
    token = text(3400, string.ascii_letters + string.digits + "-_")
    with app.test_request_context(f"/login/f/{handle}/response", method="POST"):
        carry = Carry(text(255), token, text(400))
        with pytest.raises(SealedStateTooLarge) as raised:
            web.flow_cookie(handle, carry)
    assert raised.value.limit == COOKIE_LIMIT and raised.value.size > COOKIE_LIMIT


def test_a_qr_image_too_large_for_a_cookie_is_a_clear_page(
    cyberark_emulator: CyberArkEmulator,
) -> None:
    """Over real HTTP: a CyberArk user whose package carries a 2 KiB QR image, signing in
    through the blueprint on sealed state: the start answers 507 with a page that says why
    and offers a new start, sets no flow cookie, and the ledger records no flow."""
    png = base64.b64encode(secrets.token_bytes(QR_PNG_BYTES)).decode("ascii")
    cyberark_emulator.add_user(
        "quinn",
        password="quinn-password",
        challenges=[["UP"], [EmulatedMechanism("QR", image=png), "SMS"]],
    )
    records = MemoryStore()
    sealed = SealedState({"k1": SealedState.generate_key()}, ledger=StoreLedger(records))
    config = CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http")
    visitor = Visitor(make_app(SealedEngine(sealed, [config])).test_client())
    answer = visitor.start("cyberark", "quinn", "quinn-password")
    assert answer.status_code == 507
    assert heading(answer) == "This sign-in cannot continue in this browser"
    assert "start again" in answer.get_data(as_text=True).lower()
    assert not [c for c in answer.headers.getlist("Set-Cookie") if "_flow_" in c]
    assert not records._records  # the ledger recorded no flow


def test_the_emulators_qr_image_still_fits(cyberark_emulator: CyberArkEmulator) -> None:
    """The same sign-in with a small QR image starts normally (the check refuses only what
    cannot fit)."""
    cyberark_emulator.add_user(
        "quinn", password="quinn-password", challenges=[["UP"], ["QR", "SMS"]]
    )
    sealed = SealedState({"k1": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
    config = CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http")
    visitor = Visitor(make_app(SealedEngine(sealed, [config])).test_client())
    assert visitor.start("cyberark", "quinn", "quinn-password").status_code == 303


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator
