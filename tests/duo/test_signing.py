"""Duo request signing, pinned to published known answers.

Every expected value below is copied from ``duo_client``'s own test suite
(github.com/duosecurity/duo_client_python, ``tests/test_client.py``, release 5.6.1): the
classes ``TestQueryParameters``, ``TestCanonicalize`` and ``TestSign``. They are the only
published signatures of Duo's scheme; Duo's web documentation describes the canonical form
but prints no signature for a known key.
"""

from __future__ import annotations

import hashlib

import pytest

from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.duo.signing import (
    DuoCredentials,
    authorization_header,
    canon_json,
    canon_params,
    canon_x_duo_headers,
    canonicalize,
    http_date,
    signature,
    signature_matches,
)

# duo_client tests/test_client.py: the fuzzed Unicode parameters used by TestCanonicalize
# and TestSign, and the canonical string they give.
FUZZ_PARAMS = {
    "\u469a\u287b\u35d0\u8ef3\u6727\u502a\u0810\ud091\xc8\uc170": [
        "\u0f45\u1a76\u341a\u654c\uc23f\u9b09\uabe2\u8343\u1b27\u60d0"
    ],
    "\u7449\u7e4b\uccfb\u59ff\ufe5f\u83b7\uadcc\u900c\ucfd1\u7813": [
        "\u8db7\u5022\u92d3\u42ef\u207d\u8730\uacfe\u5617\u0946\u4e30"
    ],
    "\u7470\u9314\u901c\u9eae\u40d8\u4201\u82d8\u8c70\u1d31\ua042": [
        "\u17d9\u0ba8\u9358\uaadf\ua42a\u48be\ufb96\u6fe9\ub7ff\u32f3"
    ],
    "\uc2c5\u2c1d\u2620\u3617\u96b3F\u8605\u20e8\uac21\u5934": [
        "\ufba9\u41aa\ubd83\u840b\u2615\u3e6e\u652d\ua8b5\ud56bU"
    ],
}
FUZZ_CANON = (
    "%E4%9A%9A%E2%A1%BB%E3%97%90%E8%BB%B3%E6%9C%A7%E5%80%AA%E0%A0%90%ED%82%91%C3%88%EC%85%B0"
    "=%E0%BD%85%E1%A9%B6%E3%90%9A%E6%95%8C%EC%88%BF%E9%AC%89%EA%AF%A2%E8%8D%83%E1%AC%A7%E6%83%90"
    "&%E7%91%89%E7%B9%8B%EC%B3%BB%E5%A7%BF%EF%B9%9F%E8%8E%B7%EA%B7%8C%E9%80%8C%EC%BF%91%E7%A0%93"
    "=%E8%B6%B7%E5%80%A2%E9%8B%93%E4%8B%AF%E2%81%BD%E8%9C%B0%EA%B3%BE%E5%98%97%E0%A5%86%E4%B8%B0"
    "&%E7%91%B0%E9%8C%94%E9%80%9C%E9%BA%AE%E4%83%98%E4%88%81%E8%8B%98%E8%B1%B0%E1%B4%B1%EA%81%82"
    "=%E1%9F%99%E0%AE%A8%E9%8D%98%EA%AB%9F%EA%90%AA%E4%A2%BE%EF%AE%96%E6%BF%A9%EB%9F%BF%E3%8B%B3"
    "&%EC%8B%85%E2%B0%9D%E2%98%A0%E3%98%97%E9%9A%B3F%E8%98%85%E2%83%A8%EA%B0%A1%E5%A4%B4"
    "=%EF%AE%A9%E4%86%AA%EB%B6%83%E8%90%8B%E2%98%95%E3%B9%AE%E6%94%AD%EA%A2%B5%ED%95%ABU"
)
FUZZ_DATE = "Fri, 07 Dec 2012 17:18:00 -0000"
FUZZ_SKEY = "gtdfxv9YgVBYcF6dl2Eq17KUQJN2PLM2ODVTkvoT"  # duo_client's test key, not a real one

# duo_client tests/test_client.py: JSON_BODY / JSON_STRING and the X-Duo header hashes of
# test_v5_with_json and test_signature_v5_lowers_and_then_sorts_headers.
JSON_BODY = {"data": "abc123", "alpha": ["a", "b", "c", "d"], "info": {"test": 1, "another": 2}}
JSON_STRING = '{"alpha":["a","b","c","d"],"data":"abc123","info":{"another":2,"test":1}}'
ONE_HEADER_HASH = (
    "630b4bfe7e9abd03da2eee8f0a5d4e60a254ec880a839bcc2223bb5b9443e8ef24d58f0"
    "254f1f5934bf8c017ebd0fd5b1acf86766bdbe74185e712a4092df3ed"
)
TWO_HEADERS_HASH = (
    "60be11a30e0756f2ee2afdce1db849b987dcf86c1133394b"
    "d7bbbc9877920330c4d78aceacbb377ab8cbd9a8efe6a410fed4047376635ac71226ab46ca10d2b1"
)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ""),
        ({"realname": ["First Last"]}, "realname=First%20Last"),
        (
            {"realname": ["First Last"], "username": ["root"]},
            "realname=First%20Last&username=root",
        ),
        ({"realname": "First Last", "username": ["root"]}, "realname=First%20Last&username=root"),
        (
            {
                "digits": ["0123456789"],
                "letters": ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"],
                "punctuation": ["!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"],
                "whitespace": ["\t\n\x0b\x0c\r "],
            },
            "digits=0123456789&letters=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "&punctuation=%21%22%23%24%25%26%27%28%29%2A%2B%2C-.%2F%3A%3B%3C%3D%3E%3F%40%5B%5C"
            "%5D%5E_%60%7B%7C%7D~&whitespace=%09%0A%0B%0C%0D%20",
        ),
        ({"foo_bar": "2", "foo": "1"}, "foo=1&foo_bar=2"),
        (FUZZ_PARAMS, FUZZ_CANON),
    ],
)
def test_canon_params_known_answers(params: dict[str, list[str] | str], expected: str) -> None:
    """Parameters canonicalise exactly as duo_client's TestQueryParameters publishes."""
    assert canon_params(params) == expected


def test_canon_params_sorts_repeated_values() -> None:
    """The values of a repeated name are sorted after encoding, as the OAuth 1.0 rule says."""
    assert canon_params({"b": ["2", "1"], "a": "z"}) == "a=z&b=1&b=2"


def test_canonical_version_2_known_answer() -> None:
    """Version 2 canonical form matches duo_client's TestCanonicalize.test_v2."""
    canonical = canonicalize(
        "PoSt", "foO.BAr52.cOm", "/Foo/BaR2/qux", FUZZ_PARAMS, FUZZ_DATE, version=2
    )
    assert canonical == f"{FUZZ_DATE}\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\n{FUZZ_CANON}"


def test_canonical_version_5_known_answer() -> None:
    """Version 5 canonical form matches duo_client's TestCanonicalize.test_v5_with_json."""
    body = canon_json(JSON_BODY)
    assert body.decode() == JSON_STRING
    canonical = canonicalize(
        "POST",
        "foO.BaR52.cOm",
        "/Foo/BaR2/qux",
        {},
        "Tue, 17 Nov 2020 14:12:00",
        body=body,
        duo_headers={"X-Duo-Header-1": "header_value_1"},
    )
    hashed_body = hashlib.sha512(JSON_STRING.encode()).hexdigest()
    assert canonical == (
        "Tue, 17 Nov 2020 14:12:00\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\n\n"
        f"{hashed_body}\n{ONE_HEADER_HASH}"
    )


def test_x_duo_headers_are_lowered_then_sorted() -> None:
    """Header hash matches test_signature_v5_lowers_and_then_sorts_headers."""
    assert canon_x_duo_headers({"x-duo-A": "header_value_1", "X-Duo-B": "header_value_2"}) == (
        TWO_HEADERS_HASH
    )
    assert canon_x_duo_headers(None) == hashlib.sha512(b"").hexdigest()


@pytest.mark.parametrize(
    "headers",
    [{"X-Other": "v"}, {"X-Duo-A": "a\x00b"}, {"X-Duo-A": "1", "x-duo-a": "2"}],
)
def test_bad_x_duo_headers_are_refused(headers: dict[str, str]) -> None:
    """A non-X-Duo header, a NUL or a repeated name is refused without echoing values."""
    with pytest.raises(InvalidInput) as caught:
        canon_x_duo_headers(headers)
    assert caught.value.field == "duo_headers"


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        ("sha1", "f01811cbbf9561623ab45b893096267fd46a5178"),
        (
            "sha512",
            "0508065035a03b2a1de2f453e629e791d180329e157f65df6b3e0f08299d4321e1c5c7a7c7ee6b9e5f"
            "c80d1fb6fbf3ad5eb7c44dd3b3985a02c37aca53ec3698",
        ),
    ],
)
def test_signature_known_answers(digest: str, expected: str) -> None:
    """HMAC-SHA1 and HMAC-SHA512 signatures match duo_client's TestSign."""
    canonical = canonicalize(
        "PoSt", "foO.BAr52.cOm", "/Foo/BaR2/qux", FUZZ_PARAMS, FUZZ_DATE, version=2
    )
    assert signature(FUZZ_SKEY, canonical, digest=digest) == expected  # type: ignore[arg-type]
    assert signature_matches(FUZZ_SKEY, canonical, expected)
    assert signature_matches(FUZZ_SKEY, canonical, expected.upper())
    assert not signature_matches(FUZZ_SKEY + "x", canonical, expected)
    assert not signature_matches(FUZZ_SKEY, canonical + "\n", expected)


def test_authorization_header_is_basic_ikey_and_signature() -> None:
    """The header is ``Basic base64(ikey:hexsig)``, as duo_client's TestSign builds it."""
    assert authorization_header("test_ikey", "f01811cbbf9561623ab45b893096267fd46a5178") == (
        "Basic dGVzdF9pa2V5OmYwMTgxMWNiYmY5NTYxNjIzYWI0NWI4OTMwOTYyNjdmZDQ2YTUxNzg="
    )


def test_http_date_is_rfc_2822_with_minus_zero() -> None:
    """The Date header is RFC 2822 with ``-0000``, as ``email.utils.formatdate`` gives."""
    assert http_date(1354900680) == FUZZ_DATE


def test_unknown_version_is_refused() -> None:
    """Only versions 2 and 5 are produced or checked."""
    with pytest.raises(InvalidInput):
        canonicalize("GET", "h", "/p", {}, FUZZ_DATE, version=4)  # type: ignore[arg-type]


def test_secret_key_is_not_in_repr() -> None:
    """The secret key never reaches a repr (attrs ``repr=False``)."""
    credentials = DuoCredentials("DIWJ8X6AEYOR5OMC6TQ1", FUZZ_SKEY, "api-xxxxxxxx.duosecurity.com")
    assert FUZZ_SKEY not in repr(credentials)
    assert "DIWJ8X6AEYOR5OMC6TQ1" in repr(credentials)


@pytest.mark.parametrize("field", ["integration_key", "secret_key", "api_hostname"])
def test_credentials_refuse_empty_or_non_ascii(field: str) -> None:
    """An empty or non-ASCII key is an InvalidInput naming the field, not echoing the value."""
    values = {"integration_key": "DI1", "secret_key": "s" * 40, "api_hostname": "api-1.duo.test"}
    values[field] = "sécret"
    with pytest.raises(InvalidInput) as caught:
        DuoCredentials(**values)
    assert caught.value.field == field
    assert "sécret" not in str(caught.value)
