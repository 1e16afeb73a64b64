"""Sealed client-side state: authentic, bound to its flow, expiring, rotatable, replay-proof."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable

import attrs
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfa_fsm.core.errors import (
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    SealedStateError,
    UsageError,
)
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.base import StoreLedger
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.sealed import SealedState
from tests.support.stores import (
    STORE_KINDS,
    FakeClock,
    StoreKit,
    advanced,
    make_snapshot,
    realistic_snapshot,
)

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(32, 64))


def _bytes(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sealed(clock: FakeClock) -> SealedState:
    return SealedState({"k1": OLD_KEY}, clock=clock, max_age=600, margin=60)


@pytest.fixture
def snapshot(clock: FakeClock) -> Snapshot:
    return make_snapshot(now=clock(), lifetime=300)


def test_round_trip(sealed: SealedState, snapshot: Snapshot) -> None:
    """open(seal(s)) gives back an equal snapshot, secrets included; the token is URL-safe."""
    token = sealed.seal(snapshot)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    assert "s3cr3t" not in token


def test_every_single_bit_flip_is_refused(sealed: SealedState, snapshot: Snapshot) -> None:
    """Flipping any one bit anywhere in the token (header, nonce, ciphertext, tag) is refused."""
    data = _bytes(sealed.seal(snapshot))
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SealedStateError):
            sealed.open(_token(bytes(flipped)), flow_id=snapshot.flow_id)


def test_every_truncation_is_refused(sealed: SealedState, snapshot: Snapshot) -> None:
    """Every prefix of the token, cut as bytes or as text, is refused."""
    token = sealed.seal(snapshot)
    data = _bytes(token)
    for length in range(len(data)):
        with pytest.raises(SealedStateError):
            sealed.open(_token(data[:length]), flow_id=snapshot.flow_id)
    for length in range(len(token)):
        with pytest.raises(SealedStateError):
            sealed.open(token[:length], flow_id=snapshot.flow_id)


@pytest.mark.parametrize("token", ["", "not base64!", "abcde", "a+b/", "x" * 70000])
def test_garbage_is_refused(sealed: SealedState, token: str) -> None:
    """Text that is not URL-safe base64 of a token is refused without a crash."""
    with pytest.raises(SealedStateError):
        sealed.open(token, flow_id="f")


def test_unknown_format_version_is_refused(sealed: SealedState, snapshot: Snapshot) -> None:
    """A token of another format version is refused, saying so."""
    data = bytearray(_bytes(sealed.seal(snapshot)))
    data[0] = 3
    with pytest.raises(SealedStateError, match="format version 3"):
        sealed.open(_token(bytes(data)), flow_id=snapshot.flow_id)


def test_token_of_another_flow_is_refused(sealed: SealedState, clock: FakeClock) -> None:
    """A valid token presented for another flow id fails authentication."""
    mine, theirs = make_snapshot(now=clock()), make_snapshot(now=clock())
    with pytest.raises(SealedStateError, match="another flow"):
        sealed.open(sealed.seal(theirs), flow_id=mine.flow_id)


def test_expired_after_max_age(sealed: SealedState, clock: FakeClock) -> None:
    """A token is refused once max_age has passed since it was sealed, deadline or not."""
    snapshot = make_snapshot(now=clock(), lifetime=3600)
    token = sealed.seal(snapshot)
    clock.advance(599)
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    clock.advance(1)
    with pytest.raises(SealedStateError, match="expired"):
        sealed.open(token, flow_id=snapshot.flow_id)


def test_expired_after_deadline_plus_margin(sealed: SealedState, clock: FakeClock) -> None:
    """A token opens through the margin after the snapshot's deadline, then is refused."""
    snapshot = make_snapshot(now=clock(), lifetime=100)
    token = sealed.seal(snapshot)
    clock.advance(100 + 59)
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    clock.advance(1)
    with pytest.raises(SealedStateError, match="expired"):
        sealed.open(token, flow_id=snapshot.flow_id)


def test_lowering_max_age_applies_to_issued_tokens(clock: FakeClock, snapshot: Snapshot) -> None:
    """max_age is checked against the issue time when opening, so lowering it takes effect."""
    token = SealedState({"k1": OLD_KEY}, clock=clock, max_age=600).seal(snapshot)
    clock.advance(120)
    with pytest.raises(SealedStateError, match="expired"):
        SealedState({"k1": OLD_KEY}, clock=clock, max_age=60).open(token, flow_id=snapshot.flow_id)


def test_key_rotation(clock: FakeClock, snapshot: Snapshot) -> None:
    """A new key seals once listed first; the old one still opens until it is removed."""
    old_token = SealedState({"k1": OLD_KEY}, clock=clock).seal(snapshot)
    rotated = SealedState([("k2", NEW_KEY), ("k1", OLD_KEY)], clock=clock)
    assert rotated.open(old_token, flow_id=snapshot.flow_id) == snapshot
    new_token = rotated.seal(snapshot)
    assert _bytes(new_token)[2:4] == b"k2"
    retired = SealedState({"k2": NEW_KEY}, clock=clock)
    assert retired.open(new_token, flow_id=snapshot.flow_id) == snapshot
    with pytest.raises(SealedStateError, match="'k1', which is not configured"):
        retired.open(old_token, flow_id=snapshot.flow_id)


def test_same_key_id_with_another_key_is_refused(clock: FakeClock, snapshot: Snapshot) -> None:
    """A token sealed under a key id that now names a different key fails authentication."""
    token = SealedState({"k1": OLD_KEY}, clock=clock).seal(snapshot)
    with pytest.raises(SealedStateError, match="failed authentication"):
        SealedState({"k1": NEW_KEY}, clock=clock).open(token, flow_id=snapshot.flow_id)


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"k1": b"short"},
        {"": OLD_KEY},
        {"has space": OLD_KEY},
        {"x" * 65: OLD_KEY},
        [("k1", OLD_KEY), ("k1", NEW_KEY)],
    ],
)
def test_bad_keys_are_refused(keys: dict[str, bytes] | list[tuple[str, bytes]]) -> None:
    """An empty key list, a key that is not 32 bytes, or a bad or repeated key id is refused."""
    with pytest.raises(UsageError):
        SealedState(keys)


@pytest.mark.parametrize(("max_age", "margin"), [(0, 0), (60, -1)])
def test_bad_lifetimes_are_refused(max_age: float, margin: float) -> None:
    """max_age must be positive and margin not negative."""
    with pytest.raises(UsageError, match="max_age"):
        SealedState({"k1": OLD_KEY}, max_age=max_age, margin=margin)


def test_generate_key() -> None:
    """generate_key gives fresh 32-byte keys that SealedState accepts."""
    first, second = SealedState.generate_key(), SealedState.generate_key()
    assert len(first) == len(second) == 32
    assert first != second
    SealedState({"fresh": first})


def test_seal_refuses_a_version_that_does_not_advance(
    sealed: SealedState, snapshot: Snapshot
) -> None:
    """Sealing with expected_version at or above the snapshot's version is a UsageError."""
    with pytest.raises(UsageError, match="not above expected_version"):
        sealed.seal(snapshot, expected_version=0)


def test_replay_is_accepted_without_a_ledger(sealed: SealedState, snapshot: Snapshot) -> None:
    """Documented: without a ledger an older token of the flow still opens until it expires."""
    old_token = sealed.seal(snapshot)
    opened = sealed.open(old_token, flow_id=snapshot.flow_id)
    sealed.seal(advanced(opened), expected_version=opened.version)
    assert sealed.open(old_token, flow_id=snapshot.flow_id) == snapshot


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_replay_is_refused_with_a_ledger(
    make_kit: Callable[[str], StoreKit], kind: str, clock: FakeClock
) -> None:
    """With a ledger only the newest token opens; an older one is refused as replayed."""
    kit = make_kit(kind)
    namespace = {"prefix": "mfa_fsm:ledger:"} if kind == "redis" else {}
    if kind in ("sqlite", "postgresql"):
        namespace = {"table": "mfa_fsm_ledger"}
    ledger = StoreLedger(kit.make(**namespace))
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, ledger=ledger)
    snapshot = make_snapshot(now=clock())
    old_token = sealed.seal(snapshot)
    opened = sealed.open(old_token, flow_id=snapshot.flow_id)
    new_token = sealed.seal(advanced(opened), expected_version=opened.version)
    assert ledger.current(snapshot.flow_id) == 1
    with pytest.raises(SealedStateError, match="replayed"):
        sealed.open(old_token, flow_id=snapshot.flow_id)
    assert sealed.open(new_token, flow_id=snapshot.flow_id) == advanced(snapshot)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_ledger_claims_a_flow_until_the_next_seal(
    make_kit: Callable[[str], StoreKit], kind: str, clock: FakeClock
) -> None:
    """A ledger claim holds off a second claim at that version; sealing the next one ends it."""
    kit = make_kit(kind)
    namespace = {"prefix": "mfa_fsm:ledger:"} if kind == "redis" else {}
    if kind in ("sqlite", "postgresql"):
        namespace = {"table": "mfa_fsm_ledger"}
    ledger = StoreLedger(kit.make(**namespace))
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, ledger=ledger)
    snapshot = make_snapshot(now=clock())
    sealed.seal(snapshot)
    claim = ledger.claim(snapshot.flow_id, 0, ttl=30)
    with pytest.raises(FlowBusy):
        ledger.claim(snapshot.flow_id, 0, ttl=30)
    ledger.release(snapshot.flow_id, claim)
    ledger.claim(snapshot.flow_id, 0, ttl=30)
    sealed.seal(advanced(snapshot), expected_version=0)
    ledger.claim(snapshot.flow_id, 1, ttl=30)
    with pytest.raises(FlowConflict):
        ledger.claim(snapshot.flow_id, 0, ttl=30)


def test_concurrent_steps_with_a_ledger_have_one_winner(clock: FakeClock) -> None:
    """Two requests opening the same token: the first seal wins, the second gets FlowConflict."""
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, ledger=StoreLedger(MemoryStore()))
    snapshot = make_snapshot(now=clock())
    token = sealed.seal(snapshot)
    first = sealed.open(token, flow_id=snapshot.flow_id)
    second = sealed.open(token, flow_id=snapshot.flow_id)
    sealed.seal(advanced(first, state="OobPending"), expected_version=first.version)
    with pytest.raises(FlowConflict):
        sealed.seal(advanced(second, state="Failed", failure="cancelled"), expected_version=0)
    with pytest.raises(FlowConflict):
        sealed.seal(snapshot)  # a second "first" seal of the same flow


def test_ledger_that_forgot_the_flow_refuses(clock: FakeClock) -> None:
    """If the ledger no longer knows the flow, its tokens are refused and seals fail."""
    ledger = StoreLedger(MemoryStore())
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, ledger=ledger)
    snapshot = make_snapshot(now=clock())
    token = SealedState({"k1": OLD_KEY}, clock=clock).seal(snapshot)  # sealed without the ledger
    with pytest.raises(SealedStateError, match="not in the replay ledger"):
        sealed.open(token, flow_id=snapshot.flow_id)
    with pytest.raises(FlowNotFound):
        sealed.seal(advanced(snapshot), expected_version=0)


def test_realistic_snapshot_fits_in_a_cookie(
    sealed: SealedState, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot as large as a real Entrust one seals to under 2,048 characters."""
    snapshot = realistic_snapshot(clock())
    token = sealed.seal(snapshot)
    json_size = len(snapshot.to_json().encode())
    with capsys.disabled():
        print(f"\nsealed state: {json_size} bytes of snapshot JSON -> {len(token)}-character token")
    assert len(token) < 2048
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot


def test_opening_does_not_change_the_ledger(clock: FakeClock) -> None:
    """open only reads the ledger: opening the same newest token twice works."""
    ledger = StoreLedger(MemoryStore())
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, ledger=ledger)
    snapshot = attrs.evolve(make_snapshot(now=clock()), version=4)
    token = sealed.seal(snapshot)
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    assert ledger.current(snapshot.flow_id) == 4


def test_a_format_1_token_still_opens(sealed: SealedState, snapshot: Snapshot) -> None:
    """A token sealed before compact storage (format 1: AES-GCM over zlib of the snapshot's
    JSON, built here byte by byte from its documented layout) opens to the same snapshot."""
    key_id = b"k1"
    issued = int(snapshot.created_at)
    header = bytes([1, len(key_id)]) + key_id + struct.pack(">II", issued, issued + 120)
    nonce = bytes(12)
    plain = zlib.compress(snapshot.to_json().encode(), 9)
    sealed_bytes = AESGCM(OLD_KEY).encrypt(nonce, plain, header + snapshot.flow_id.encode())
    old_token = _token(header + nonce + sealed_bytes)
    assert sealed.open(old_token, flow_id=snapshot.flow_id) == snapshot
    assert _bytes(sealed.seal(snapshot))[0] == 2  # new tokens are format 2


# -- boundaries (each pinned so a mutant of the comparison cannot survive) -------------------


def test_a_token_is_refused_at_exactly_its_expiry_second() -> None:
    """The expiry is exclusive and sealed in whole seconds: one millisecond before it the
    token opens, at that second it does not."""
    clock = FakeClock()
    clock.now = 1_800_000_000.0
    sealed = SealedState({"k1": OLD_KEY}, clock=clock, max_age=600, margin=60)
    snapshot = make_snapshot(now=clock.now, lifetime=300)  # expiry: deadline + margin = +360
    token = sealed.seal(snapshot)
    clock.now += 359.999
    assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
    clock.now = 1_800_000_360.0
    with pytest.raises(SealedStateError, match="has expired; start the flow again"):
        sealed.open(token, flow_id=snapshot.flow_id)


def test_max_age_bounds_tokens_already_handed_out() -> None:
    """Lowering max_age applies to tokens sealed before: refused at exactly issued + max_age."""
    clock = FakeClock()
    clock.now = 1_800_000_000.0
    snapshot = make_snapshot(now=clock.now, lifetime=3000)
    token = SealedState({"k1": OLD_KEY}, clock=clock, max_age=600, margin=60).seal(snapshot)
    stricter = SealedState({"k1": OLD_KEY}, clock=clock, max_age=100, margin=60)
    clock.now += 99.5
    assert stricter.open(token, flow_id=snapshot.flow_id) == snapshot
    clock.now = 1_800_000_100.0
    with pytest.raises(SealedStateError, match="has expired"):
        stricter.open(token, flow_id=snapshot.flow_id)


@pytest.mark.parametrize("junk", ["!", "=", " ", ".", "\n", "é", "+", "/"])
def test_a_token_with_a_junk_character_inserted_is_not_base64(
    sealed: SealedState, snapshot: Snapshot, junk: str
) -> None:
    """base64 decoding would skip such characters; the alphabet is checked first."""
    token = sealed.seal(snapshot)
    altered = token[:10] + junk + token[10:]
    with pytest.raises(
        SealedStateError, match=r"^sealed state is not URL-safe base64; start the flow again$"
    ):
        sealed.open(altered, flow_id=snapshot.flow_id)


def test_the_size_cap_is_exact(sealed: SealedState, snapshot: Snapshot) -> None:
    """65536 characters are read (and fail later, as truncated junk); one more is refused as
    not base64 without being decoded."""
    with pytest.raises(SealedStateError) as at_cap:
        sealed.open("A" * 65536, flow_id=snapshot.flow_id)
    assert "URL-safe base64" not in str(at_cap.value)
    with pytest.raises(SealedStateError, match="not URL-safe base64"):
        sealed.open("A" * 65537, flow_id=snapshot.flow_id)


@pytest.mark.parametrize(
    ("max_age", "margin", "ok"),
    [
        (0, 60, False),
        (-1, 60, False),
        (0.5, 60, True),
        (600, 0, True),
        (600, 0.5, True),
        (600, -0.001, False),
    ],
)
def test_zero_and_fractional_ages_and_margins(max_age: float, margin: float, ok: bool) -> None:
    """max_age must be positive (a fraction of a second is positive); margin may be zero."""
    if ok:
        sealed = SealedState({"k1": OLD_KEY}, max_age=max_age, margin=margin)
        assert (sealed.max_age, sealed.margin) == (max_age, margin)
    else:
        with pytest.raises(
            UsageError, match=r"^max_age must be positive and margin must not be negative$"
        ):
            SealedState({"k1": OLD_KEY}, max_age=max_age, margin=margin)


def test_key_errors_say_what_to_do() -> None:
    with pytest.raises(
        UsageError, match=r"^SealedState needs at least one key; make one with generate_key\(\)$"
    ):
        SealedState({})
    with pytest.raises(
        UsageError, match=r"^a key id must be 1 to 64 printable ASCII characters, no spaces$"
    ):
        SealedState({"bad id": OLD_KEY})
    with pytest.raises(UsageError, match=r"must be 32 bytes \(AES-256\); make one with Sealed"):
        SealedState({"k1": bytes(16)})


def test_a_retired_or_malformed_key_id_is_named_only_when_well_formed(
    sealed: SealedState, snapshot: Snapshot
) -> None:
    other = SealedState({"k9": NEW_KEY}).seal(snapshot)
    with pytest.raises(
        SealedStateError,
        match=r"^sealed state names key 'k9', which is not configured \(retired, or from "
        r"another application\); start the flow again$",
    ):
        sealed.open(other, flow_id=snapshot.flow_id)
    data = bytearray(_bytes(other))
    data[2] = 0x01  # the key id's one byte becomes a control character
    with pytest.raises(SealedStateError, match="names key a malformed key id"):
        sealed.open(_token(bytes(data)), flow_id=snapshot.flow_id)


def test_malformed_tokens_get_their_own_messages(sealed: SealedState, snapshot: Snapshot) -> None:
    """Each way a token can be broken is named, and each message says to start again."""
    flow_id = snapshot.flow_id
    with pytest.raises(
        SealedStateError,
        match=r"^sealed state is not valid base64 \(truncated\?\); start the flow again$",
    ):
        sealed.open("A", flow_id=flow_id)
    with pytest.raises(
        SealedStateError, match=r"^sealed state is truncated; start the flow again$"
    ):
        sealed.open(_token(b"\x01"), flow_id=flow_id)
    with pytest.raises(
        SealedStateError,
        match=r"^sealed state has format version 99, this mfa_fsm reads \[1, 2\]; "
        r"start the flow again$",
    ):
        sealed.open(_token(bytes([99, 2])), flow_id=flow_id)
    with pytest.raises(SealedStateError, match=r"^sealed state is truncated"):
        sealed.open(_token(bytes([1, 0]) + bytes(60)), flow_id=flow_id)
    data = _bytes(sealed.seal(snapshot))
    header = 2 + len("k1") + 8
    # Header, nonce and tag with nothing sealed: long enough to try, and then not authentic.
    with pytest.raises(
        SealedStateError,
        match=rf"^sealed state for flow ref {flow_ref(flow_id)} failed authentication: it was "
        r"altered or truncated, or it belongs to another flow; start the flow again$",
    ):
        sealed.open(_token(data[: header + 12 + 16]), flow_id=flow_id)
    with pytest.raises(SealedStateError, match=r"^sealed state is truncated"):
        sealed.open(_token(data[: header + 12 + 15]), flow_id=flow_id)


def test_a_one_character_key_id_works(clock: FakeClock, snapshot: Snapshot) -> None:
    sealed = SealedState({"k": OLD_KEY}, clock=clock)
    assert sealed.open(sealed.seal(snapshot), flow_id=snapshot.flow_id) == snapshot


def test_a_snapshot_that_did_not_advance_is_refused_by_flow(
    sealed: SealedState, snapshot: Snapshot
) -> None:
    with pytest.raises(
        UsageError, match=rf"^snapshot of flow ref {flow_ref(snapshot.flow_id)} has version 0"
    ):
        sealed.seal(snapshot, expected_version=0)


def test_tokens_ending_in_any_character_open(clock: FakeClock) -> None:
    """Only '=' padding is stripped: a token whose last character is a letter such as 'X'
    opens too (a wider strip would cut it). Snapshots of varied size are sealed until one
    token ends in 'X' (about 1 in 200 does; the bound makes a miss vanishingly unlikely)."""
    sealed = SealedState({"k1": OLD_KEY}, clock=clock)
    for attempt in range(5000):
        snapshot = make_snapshot(now=clock(), session="s" * (attempt % 11 + 1))
        token = sealed.seal(snapshot)
        if token.endswith("X"):
            assert sealed.open(token, flow_id=snapshot.flow_id) == snapshot
            return
    pytest.fail("no sealed token ended in 'X'")


def test_a_token_the_ledger_never_saw_is_refused(clock: FakeClock, snapshot: Snapshot) -> None:
    token = SealedState({"k1": OLD_KEY}, clock=clock).seal(snapshot)
    guarded = SealedState(
        {"k1": OLD_KEY}, clock=clock, ledger=StoreLedger(MemoryStore(clock=clock))
    )
    with pytest.raises(
        SealedStateError,
        match=rf"^flow ref {flow_ref(snapshot.flow_id)} is not in the replay ledger "
        r"\(expired, or sealed without this ledger\); start the flow again$",
    ):
        guarded.open(token, flow_id=snapshot.flow_id)
