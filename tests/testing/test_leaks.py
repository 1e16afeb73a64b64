"""The leak helpers: what they collect, and that they find a secret wherever it hides."""

from __future__ import annotations

from mfa_fsm import EntrustConfig, EntrustFlow
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.testing import EntrustEmulator, SecretRecorder, find_leaks


def test_recorder_and_emulator_sink_see_every_token(
    entrust_emulator: EntrustEmulator, suite_leak_guard: set[str]
) -> None:
    """Both the transport recorder and the emulators' sink collect the tokens of a login."""
    recorder = SecretRecorder()
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), transport=recorder
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="OTP")
    otp = entrust_emulator.last_otp("jsmith")
    assert otp is not None
    view = flow.send("submit_response", answer=otp)
    assert view.result is not None
    final = view.result.token
    for sink in (recorder.secrets, suite_leak_guard):
        assert final in sink
        assert otp in sink
    assert len(recorder.secrets) >= 5  # query, EXTERNAL, select and final tokens, the OTP


def test_find_leaks() -> None:
    """find_leaks reports exactly the secrets that occur in the texts."""
    texts = ["user jsmith logged in", "token=abcdef123"]
    assert find_leaks(texts, {"abcdef123", "zzz999", "jsmith"}) == ["abcdef123", "jsmith"]
    assert find_leaks([], {"x"}) == []


def test_short_codes_count_only_standing_alone() -> None:
    """An OTP inside a hex flow id is chance; the same OTP on its own is a leak."""
    assert find_leaks(["flow_id=7bb87ec759c34dcba71611234c788e40"], {"1123"}) == []
    assert find_leaks(["code 482913 accepted"], {"482913"}) == ["482913"]
    assert find_leaks(["id=ab482913cd"], {"482913"}) == []
