"""The emulators over TLS, their session cookies, the token's claims and the OAuthTokens form.

Every HTTPS call here verifies the emulator's certificate against the CA file it exposes
(``verify=emulator.ca_file``); none turns verification off.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from http.cookies import SimpleCookie
from typing import Any

import pytest
import requests

from mfa_fsm import CyberArkConfig, CyberArkFlow, EntrustConfig, EntrustFlow, RequestsTransport
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import NO_RETRY
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.cyberark import TENANT, Clock, pick
from tests.support.stateless import StatelessClient

NATIVE = {"X-IDAP-NATIVE-CLIENT": "true"}
START = "/Security/StartAuthentication"
ADVANCE = "/Security/AdvanceAuthentication"


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (what the vendor SDK reads)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def set_cookies(response: requests.Response) -> dict[str, SimpleCookie]:
    """Every Set-Cookie line of a reply, parsed, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for line in response.raw.headers.getlist("Set-Cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        for name in cookie:
            parsed[name] = cookie
    return parsed


@pytest.mark.parametrize("emulator_class", [EntrustEmulator, CyberArkEmulator])
def test_tls_is_verified_against_the_exposed_ca(emulator_class: type) -> None:
    """With tls=True the base URL is https://, requests verifying against ca_file get an
    answer, and a client trusting only the public authorities is refused."""
    with emulator_class(tls=True) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        ca_file = emulator.ca_file
        assert os.path.isfile(ca_file)
        reply = requests.post(emulator.base_url + "/nowhere", json={}, verify=ca_file, timeout=5)
        assert reply.status_code == 404  # answered over TLS: the handshake was verified
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(emulator.base_url + "/nowhere", json={}, timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP is not served
            requests.post(
                emulator.base_url.replace("https", "http") + "/nowhere", json={}, timeout=5
            )
    assert not os.path.exists(ca_file)  # removed at stop


def test_plain_http_stays_the_default() -> None:
    with CyberArkEmulator() as emulator:
        assert emulator.base_url.startswith("http://")
        with pytest.raises(RuntimeError, match="tls=True"):
            _ = emulator.ca_file


def test_a_stalled_tls_client_does_not_hold_up_others() -> None:
    """The handshake runs in the connection's own thread: a client that connects and says
    nothing does not stop another from being served."""
    with CyberArkEmulator(tls=True) as emulator:
        with socket.create_connection((emulator.host, emulator.port), timeout=5):
            reply = requests.post(
                emulator.base_url + START,
                json={"User": "alice", "Version": "1.0"},
                headers=NATIVE,
                verify=emulator.ca_file,
                timeout=5,
            )
        assert reply.json()["Result"]["Summary"] == "NewPackage"


def test_cyberark_pod_fqdn_over_tls_is_the_vendor_bare_host() -> None:
    """Over TLS the vendor's bare-host PodFqdn works as https://{PodFqdn}; the URL form of
    pod_fqdn_as_url is an https:// URL too."""
    with CyberArkEmulator(tls=True) as emulator:
        first = requests.post(
            emulator.base_url + START,
            json={"User": "frank", "Version": "1.0"},
            headers=NATIVE,
            verify=emulator.ca_file,
            timeout=5,
        ).json()
        pod = first["Result"]["PodFqdn"]
        assert pod == f"127.0.0.1:{emulator.port}/pod2"
        second = requests.post(
            f"https://{pod}{START}",
            json={"User": "frank", "Version": "1.0"},
            headers=NATIVE,
            verify=emulator.ca_file,
            timeout=5,
        ).json()
        assert second["Result"]["Summary"] == "NewPackage"
        emulator.pod_fqdn_as_url = True
        again = requests.post(
            emulator.base_url + START,
            json={"User": "frank", "Version": "1.0"},
            headers=NATIVE,
            verify=emulator.ca_file,
            timeout=5,
        ).json()
        assert again["Result"]["PodFqdn"] == f"https://127.0.0.1:{emulator.port}/pod2"


def _cyberark_flow(emulator: CyberArkEmulator, clock: Clock) -> tuple[StatelessClient, Any]:
    transport = RequestsTransport(verify=emulator.ca_file)
    config = CyberArkConfig(
        base_url=emulator.base_url, tenant_id=TENANT, poll_interval=0.0, retry=NO_RETRY
    )
    flow = CyberArkFlow.start(config=config, user="alice", transport=transport, clock=clock)
    return StatelessClient(flow, config=config, transport=transport, clock=clock), transport


def test_cyberark_login_over_tls_sets_secure_cookies() -> None:
    """Our own client logs in over verified TLS (default https pod scheme); every reply, the
    first StartAuthentication included, re-sets an HttpOnly sessdata cookie, and with TLS
    both it and .ASPXAUTH are Secure."""
    clock = Clock()
    with CyberArkEmulator(tls=True) as emulator:
        before = requests.post(
            emulator.base_url + START,
            json={"User": "alice", "Version": "1.0"},
            headers=NATIVE,
            verify=emulator.ca_file,
            timeout=5,
        )
        cookie = set_cookies(before)["sessdata"]["sessdata"]
        assert cookie["httponly"] and cookie["secure"] and cookie.value
        client, _ = _cyberark_flow(emulator, clock)
        client.send("submit_first_factor", answer="alice-password")
        client.send("select_second_factor", factor=pick(client.view, "Security Question"))
        view = client.send("submit_response", answer="Smokey")
        assert view.state == "Completed"
        result = client.restore().snapshot().result
        assert result is not None and result.cookies[".ASPXAUTH"]
        with requests.Session() as session:
            # verify= on each call: requests lets REQUESTS_CA_BUNDLE override session.verify.
            session.headers.update(NATIVE)
            session.post(
                emulator.base_url + START,
                json={"User": "carol", "Version": "1.0"},
                verify=emulator.ca_file,
            )
            assert "sessdata" in session.cookies  # the jar keeps it for the next call


def test_cyberark_token_carries_the_platform_claims() -> None:
    """The JWT in Result.Token names the tenant the way the vendor SDK reads it."""
    with CyberArkEmulator(subdomain="acme", platform_domain="cyberark.cloud") as emulator:
        session = requests.Session()
        session.headers.update(NATIVE)
        start = session.post(
            emulator.base_url + START,
            json={"User": "bob", "Version": "1.0", "PlatformTokenResponse": True},
            timeout=5,
        ).json()["Result"]
        mechanism = start["Challenges"][0]["Mechanisms"][0]["MechanismId"]
        body = {"SessionId": start["SessionId"], "MechanismId": mechanism}
        session.post(emulator.base_url + ADVANCE, json={**body, "Action": "StartOOB"}, timeout=5)
        emulator.approve("bob")
        done = session.post(emulator.base_url + ADVANCE, json={**body, "Action": "Poll"}).json()
        token = done["Result"]["Token"]
        got = claims(token)
        assert got["tenant_id"] == "ABC1234"
        assert got["subdomain"] == "acme"
        assert got["platform_domain"] == "cyberark.cloud"
        assert got["unique_name"] == "bob@example.com"
        assert got["exp"] - got["iat"] == done["Result"]["TokenLifetime"] == 3600


def test_cyberark_oauth_tokens_form_completes_our_flow() -> None:
    """With oauth_tokens=True the LoginSuccess has no Token, Auth or .ASPXAUTH, only
    OAuthTokens; our client takes access_token as the token and expires_in as its life."""
    clock = Clock()
    with CyberArkEmulator(tls=True, oauth_tokens=True, token_lifetime=1800) as emulator:
        client, _ = _cyberark_flow(emulator, clock)
        client.send("submit_first_factor", answer="alice-password")
        client.send("select_second_factor", factor=pick(client.view, "Security Question"))
        assert client.send("submit_response", answer="Smokey").state == "Completed"
        result = client.restore().snapshot().result
        assert result is not None
        assert claims(result.token)["unique_name"] == "alice@example.com"
        assert emulator.token_valid(result.token)
        assert result.expires_at == clock.now + 1800
        assert ".ASPXAUTH" not in result.cookies


def test_a_zero_token_lifetime_is_an_expired_token_not_an_unknown_one() -> None:
    clock = Clock()
    with CyberArkEmulator(tls=True, oauth_tokens=True, token_lifetime=0) as emulator:
        client, _ = _cyberark_flow(emulator, clock)
        client.send("submit_first_factor", answer="alice-password")
        client.send("select_second_factor", factor=pick(client.view, "Security Question"))
        assert client.send("submit_response", answer="Smokey").state == "Completed"
        result = client.restore().snapshot().result
        assert result is not None and result.expires_at == clock.now


def test_entrust_web_session_cookie_only_when_asked() -> None:
    """enableWebSession: true on the completing call sets INTELLITRUST_SESSION_ID (Secure
    over TLS); without it no such cookie is set."""
    with EntrustEmulator(tls=True) as emulator:
        v2 = emulator.base_url + "/api/web/v2/authentication/users"
        v1 = emulator.base_url + "/api/web/v1/authentication/users"
        for web_session in (True, False):
            with requests.Session() as session:
                ca = emulator.ca_file
                app = {"applicationId": emulator.application_id}
                query = session.post(v2, json={**app, "userId": "otpuser"}, verify=ca).json()
                assert "TOKEN" in query["authenticationTypes"]
                select = session.post(
                    v2 + "/authenticate/TOKEN", json={**app, "userId": "otpuser"}, verify=ca
                ).json()
                done = session.post(
                    v1 + "/authenticate/TOKEN/complete",
                    json={
                        **app,
                        "response": DEMO_TOKEN_CODE,
                        "enableWebSession": web_session,
                    },
                    headers={"Authorization": f"Bearer {select['token']}"},
                    verify=ca,
                )
                assert done.json()["authenticationCompleted"] is True, done.text
                cookies = set_cookies(done)
                if web_session:
                    cookie = cookies["INTELLITRUST_SESSION_ID"]["INTELLITRUST_SESSION_ID"]
                    assert cookie["httponly"] and cookie["secure"] and cookie.value
                else:
                    assert "INTELLITRUST_SESSION_ID" not in cookies


def test_entrust_flow_over_tls() -> None:
    """Our Entrust client over verified TLS."""
    with EntrustEmulator(tls=True) as emulator:
        config = EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)
        transport = RequestsTransport(verify=emulator.ca_file)
        flow = EntrustFlow.start(
            config=config, verified_user=VerifiedUser("jsmith"), transport=transport
        )
        assert flow.state != "Failed"
        assert emulator.calls[0].path.endswith("/authentication/users")


def test_cli_emulate_tls_prints_the_ca_files() -> None:
    """`mfa-fsm emulate --tls` serves https:// and prints each CA file, which verifies."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "mfa_fsm.cli",
            "emulate",
            "--tls",
            "--entrust-port",
            "0",
            "--cyberark-port",
            "0",
            "--duo-port",
            "0",
            "--seconds",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # One line per emulator, then one per CA file (three emulators).
        lines = [process.stdout.readline() for _ in range(6)]
        text = "".join(lines)
        url = re.search(r"CyberArk Identity emulator: +(https://127\.0\.0\.1:\d+)", text)
        ca = re.search(r"CyberArk Identity CA certificate: +(\S+)", text)
        assert url and ca and re.search(r"Entrust IDaaS CA certificate: +\S+", text), text
        reply = requests.post(
            url[1] + START,
            json={"User": "alice", "Version": "1.0"},
            headers=NATIVE,
            verify=ca[1],
            timeout=5,
        )
        assert reply.json()["success"] is True
        ssl.create_default_context(cafile=ca[1])  # a well-formed PEM authority
    finally:
        process.terminate()
        process.communicate(timeout=10)
