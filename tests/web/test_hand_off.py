"""The blueprint hands the result off on completion: the store (or the client's sealed token)
keeps no IdP token once on_complete has it, and the final page still renders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer

from mfa_fsm import CyberArkConfig, Engine, FlowView, MemoryStore, SealedEngine, StoreLedger
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import CyberArkEmulator, SecretRecorder
from mfa_fsm.testing.leaks import find_leaks
from tests.stores.test_at_rest import readable
from tests.support.web import Visitor, flow_cookie, heading, make_app


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


def sign_in_with_sms(visitor: Visitor, emulator: CyberArkEmulator) -> None:
    """alice: password, then the SMS code; ends on the Completed step."""
    visitor.start("cyberark", "alice", "alice-password")
    picker = visitor.page().get_data(as_text=True)
    sms = re.search(
        r'name="factor" value="([^"]+)">(?:(?!</form>).)*?class="mfa-option-detail">SMS',
        picker,
        re.S,
    )
    assert sms
    visitor.step("factor", factor=sms.group(1))
    visitor.page()
    code = emulator.last_code("alice")
    assert code
    visitor.step("response", response=code)


def test_stored_flow_keeps_no_token_after_on_complete(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """on_complete gets the token; the store's raw record then holds none of the IdP's
    secrets, and the success page still shows."""
    store = MemoryStore()
    config = CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http")
    engine = Engine(store, [config], transport=recorder)
    seen: list[FlowView] = []

    def sign_in(view: FlowView) -> Any:
        seen.append(view)

    visitor = Visitor(make_app(engine, on_complete=sign_in).test_client())
    sign_in_with_sms(visitor, cyberark_emulator)
    assert len(seen) == 1 and seen[0].result is not None
    secrets = {seen[0].result.token, *seen[0].result.cookies.values()} - {""}
    assert secrets
    raw = [readable(record.payload) for record in store._records.values()]
    assert len(raw) == 1 and '"handed_off":true' in raw[0]
    assert not find_leaks(raw, recorder.secrets | secrets)
    assert heading(visitor.page()) == "You are signed in"


def test_sealed_cookie_keeps_no_token_after_on_complete(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder
) -> None:
    """With a SealedEngine the cookie set on completion seals the scrubbed snapshot."""
    sealed = SealedState({"k": bytes(range(32))}, ledger=StoreLedger(MemoryStore()))
    config = CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http")
    engine = SealedEngine(sealed, [config], transport=recorder)
    seen: list[FlowView] = []
    visitor = Visitor(make_app(engine, on_complete=seen.append).test_client())
    sign_in_with_sms(visitor, cyberark_emulator)
    response = visitor.page()
    assert heading(response) == "You are signed in"
    assert len(seen) == 1 and seen[0].result is not None and seen[0].result.token
    cookie = visitor.client.get_cookie(flow_cookie(visitor), path="/")
    assert cookie is not None
    snapshot = engine.sealed.open(_sealed_token(cookie.value), flow_id=seen[0].flow_id)
    assert snapshot.result is not None and snapshot.result.handed_off
    assert not find_leaks([snapshot.to_json()], recorder.secrets | {seen[0].result.token})


def _sealed_token(cookie: str) -> str:
    """The sealed token inside the blueprint's signed flow cookie."""
    payload = URLSafeTimedSerializer(
        "test-secret-key-of-enough-length-0123456789", salt="mfa_fsm.web.flow"
    ).loads(cookie)
    return str(payload["t"])
