"""Hypothesis strategies for CyberArk replies: the documented envelope, its ``Result`` and
mechanisms, each field plausible or (now and then) any JSON value at all."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from mfa_fsm import HttpResponse

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def mostly(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The plausible value nine times in ten, else any JSON value at all."""
    return st.integers(0, 9).flatmap(lambda roll: value if roll else json_values)


def shaped(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the documented keys (the optional ones may be missing), each holding a
    plausible value or, now and then, an arbitrary one: deep fields get reached too."""
    return st.fixed_dictionaries(
        {key: mostly(value) for key, value in required.items()},
        optional={key: mostly(value) for key, value in optional.items()},
    )


text = st.text(max_size=12)
some_text = st.text(min_size=1, max_size=12)
parts = shaped({"Uuid": some_text, "QuestionText": text}, {"PromptMechChosen": text})
mechanism = shaped(
    {
        "MechanismId": some_text,
        "Name": st.sampled_from(["UP", "SQ", "SMS", "EMAIL", "OTP", "OATH", "PF", "QR", "U2F"]),
        "AnswerType": st.sampled_from(["Text", "StartTextOob", "StartOob", "Other"]),
    },
    {
        "PromptSelectMech": text,
        "PromptMechChosen": text,
        "Enrolled": st.booleans(),
        "Question": text,
        "Image": text,
        "PartialDeviceAddress": text,
        "MaskedEmailAddress": text,
        "MultipartMechanism": shaped({"MechanismParts": st.lists(parts, max_size=3)}, {}),
    },
)
result = shaped(
    {
        "Summary": st.sampled_from(
            ["NewPackage", "StartNextChallenge", "OobPending", "LoginSuccess", "Failure"]
        )
    },
    {
        "SessionId": text,
        "TenantId": text,
        "Challenges": st.lists(
            shaped({"Mechanisms": st.lists(mechanism, min_size=1, max_size=3)}, {}),
            min_size=1,
            max_size=3,
        ),
        "PodFqdn": text,
        "IdpRedirectUrl": text,
        "GeneratedAuthValue": text | st.integers(),
        "ClientMessage": text,
        "UserId": text,
        "DisplayName": text,
        "User": text,
        "EmailAddress": text,
        "Token": text,
        "Auth": text,
        "TokenLifetime": st.integers() | st.floats(),
    },
)
envelopes = shaped(
    {"success": st.booleans(), "Result": result},
    {"ErrorID": text, "ErrorCode": text | st.integers(), "Message": text},
)
# Header values are ISO-8859-1 on the wire; what is fuzzed here is the printable ASCII a
# server may send (tests/core/test_replies.py has the non-ASCII digits case).
retry_after_values = st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126))
statuses = st.sampled_from([200] * 8 + [201, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503, 504])


def as_response(data: Any, status: int) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


#: whole HTTP replies: mostly 200 with a mostly well-formed envelope
responses = st.builds(as_response, mostly(envelopes), statuses)
