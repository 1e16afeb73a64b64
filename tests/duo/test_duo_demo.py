"""Duo in the demo (``mfa-fsm demo``), over real HTTP: the demo application's own sign-in
vouches for a Duo user and begins Duo at once (its ``/preauth`` carries the browser's
address), the control page plays the user's phone, and ``mfa-fsm demo`` lists the Duo users."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
import requests

from mfa_fsm.cli import main
from mfa_fsm.testing.demo_idps import DuoDemo
from mfa_fsm.web.demo import Demo


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with Demo() as running:
        yield running


def form_token(session: requests.Session, url: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', session.get(url, timeout=5).text)
    assert found
    return found.group(1)


def sign_in(session: requests.Session, demo: Demo, user: str, password: str) -> requests.Response:
    token = form_token(session, demo.url + "signin", "csrf_token")
    return session.post(
        demo.url + "signin",
        data={"user": user, "password": password, "csrf_token": token},
        timeout=5,
    )


def test_the_demo_sign_in_begins_duo_for_the_user_it_vouches_for(demo: Demo) -> None:
    session = requests.Session()
    duo = demo.emulator("duo")
    calls = len(duo.calls)
    wrong = sign_in(session, demo, "dsmith", "guess")
    assert wrong.status_code == 401
    assert len(duo.calls) == calls  # Duo is not asked before the application's check
    right = sign_in(session, demo, "dsmith", DuoDemo.app_passwords["dsmith"])
    assert right.status_code == 200
    assert 'data-state="AwaitingSecondFactor"' in right.text
    assert "Duo Push to iOS (XXX-XXX-0142)" in right.text
    (preauth,) = [c for c in duo.calls[calls:] if c.path == "/auth/v2/preauth"]
    assert preauth.body is not None
    assert (preauth.body["username"], preauth.body["ipaddr"]) == ("dsmith", "127.0.0.1")


def test_the_control_page_approves_a_duo_push(demo: Demo) -> None:
    session = requests.Session()
    page = sign_in(session, demo, "dsmith", DuoDemo.app_passwords["dsmith"])
    factor_url = re.search(r'<form method="post" action="([^"]+/factor)"', page.text)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert factor_url and csrf
    pending = session.post(
        demo.url.rstrip("/") + factor_url.group(1),
        data={"factor": "push:DPDEMO0PHONE00000001", "csrf_token": csrf.group(1)},
        timeout=5,
    )
    assert 'data-state="OobPending"' in pending.text
    control = requests.Session()
    token = form_token(control, demo.url + "emulator", "token")
    done = control.post(demo.url + "emulator/duo/dsmith/approve", data={"token": token}, timeout=5)
    assert "approved the request for dsmith" in done.text


def test_mfa_fsm_demo_lists_the_duo_users() -> None:
    out = io.StringIO()
    assert main(["demo", "--port", "0", "--seconds", "0.2"], stdout=out) == 0
    text = out.getvalue()
    assert re.search(r"Duo Auth API emulator: +http://127\.0\.0\.1:\d+", text)
    for user in ("dsmith", "dcall", "dtrusted", "dblocked", "dnew"):
        assert f"{user} {user}-app-password" in text  # the demo application's passwords
        assert re.search(rf"duo +{user} ", text)
    assert "Duo: Duo Mobile and the token show passcode 246810." in text


def test_duo_demo_hints_read_the_emulator() -> None:
    """What ``login --emulator`` prints beside a Duo step: the SMS passcode sent, the code
    Duo Mobile shows; nothing for a user with no SMS or for other steps."""
    from mfa_fsm import DuoFlow, VerifiedUser  # noqa: PLC0415

    with DuoDemo() as idp:
        assert idp.last_code("dsmith") is None
        assert idp.last_code("nobody") is None
        flow = DuoFlow.start(
            config=idp.config(poll_interval=0.0), verified_user=VerifiedUser("dsmith")
        )
        view = flow.send("submit_first_factor")
        assert idp.hint("dsmith", view) is None
        view = flow.send("select_second_factor", factor="sms:DPDEMO0PHONE00000001")
        sent = idp.emulator.sms_passcodes("dsmith")[0]
        assert idp.hint("dsmith", view) == f"the text message holds passcode {sent}"
        assert idp.last_code("dsmith") == sent
        flow = DuoFlow.start(config=idp.config(), verified_user=VerifiedUser("dsmith"))
        flow.send("submit_first_factor")
        view = flow.send("select_second_factor", factor="passcode")
        assert idp.hint("dsmith", view) == "Duo Mobile and the token show 246810"
        assert idp.approve_route("dsmith").endswith("/_emulator/push/dsmith/approve")
        with pytest.raises(LookupError):
            idp.deny("dsmith")  # no push is waiting
