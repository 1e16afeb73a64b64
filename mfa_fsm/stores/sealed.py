"""Sealed client-side state: the snapshot travels with the client, encrypted and authenticated.

Instead of storing the snapshot on the server, the handler gives the client a token (a cookie
or hidden form field) and gets it back with the next request::

    sealed = SealedState({"2025-06": key})             # keys from the application's secrets
    token = sealed.seal(snapshot)                        # first step of a new flow
    ...
    snapshot = sealed.open(token, flow_id=flow_id)       # SealedStateError if not acceptable
    new = ...                                            # restore the flow, send one event
    token = sealed.seal(new, expected_version=snapshot.version)

The token is AES-256-GCM (``cryptography``), so the client can neither read the IdP tokens
and session ids in the snapshot nor change a single bit without detection. Its layout, before
URL-safe base64 without padding::

    1 byte    format version (2; tokens of format 1 still open)
    1 byte    key id length n (1..64)
    n bytes   key id (ASCII), naming the key that sealed it
    4 bytes   issued at, whole epoch seconds, big-endian
    4 bytes   expires at, whole epoch seconds, big-endian
    12 bytes  random nonce
    rest      ciphertext of the snapshot in compact form, then the 16-byte GCM tag

The associated data is the header (all bytes before the nonce) followed by the flow id, so the
header cannot be altered and a token only opens for the flow it was sealed for; the flow id
itself is not in the token (the caller knows it, e.g. from the URL or the cookie name). A
token expires at the earlier of ``issued at + max_age`` and ``snapshot.deadline + margin``.
Snapshots are packed before encryption (``mfa_fsm.stores.compact``: deflate against a preset
dictionary of the snapshots' common text), so that a token costs little more than the
secrets it carries: an Entrust flow waiting for a code, holding two 600-character IdP tokens,
seals to about 1,470 characters. Format 1 tokens held zlib-compressed JSON; they still open.

Keys and rotation: ``keys`` lists ``(key_id, key)`` pairs, newest first. The first key seals;
every listed key opens. To rotate, put a new key first and keep the old one listed until the
tokens it sealed have expired (``max_age``), then remove it: its tokens are then refused as
sealed with an unknown key. Random 96-bit nonces make it unsafe to seal more than about 2**32
tokens with one key, so rotate well before that (monthly is plenty for most sites).

Replays. Without a ledger, a token is valid until it expires, whatever happened since: a
client (or anyone who copied the token) can send an *older* token of the same flow again and
the flow continues from that older state, and two concurrent requests with the same token
both succeed. Give ``SealedState`` a :class:`~mfa_fsm.stores.base.VersionLedger` (for
example ``StoreLedger(RedisStore(client, prefix="mfa_fsm:ledger:"))``) to close that hole: it
keeps only the newest version number of each flow on the server, ``open`` refuses any token
that is not the newest, and ``seal(..., expected_version=...)`` is a compare-and-set on that
number, so of two concurrent requests exactly one wins. ``mfa_fsm.engine.SealedEngine`` also
claims the flow on the ledger before a step's first IdP call, so the loser never reaches the
IdP; without a ledger there is nothing to claim, and both requests make their IdP calls.

Compression before encryption makes the token's length depend on the snapshot's content. That
would matter if an attacker could place chosen text next to a secret in many tokens and watch
their lengths; here each flow's secrets are fresh per flow and the client-chosen parts are few,
so the size saving is worth it.

Requires the ``sealed`` extra (``pip install 'mfa_fsm[sealed]'``).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfa_fsm.core.calls import checked, is_seconds
from mfa_fsm.core.errors import (
    FlowConflict,
    SealedStateError,
    SealedStateStale,
    SealedStateTooLarge,
    UsageError,
)
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.plans import Plan, call, run
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.base import (
    DEFAULT_MARGIN,
    Clock,
    VersionLedger,
    check_advances,
    check_flow_id,
    expires_at,
)
from mfa_fsm.stores.compact import pack, unpack

if TYPE_CHECKING:
    from mfa_fsm.stores.aio import AsyncVersionLedger

#: The first byte of every token sealed now; ``open`` also reads :data:`FORMATS_READ`.
FORMAT_VERSION = 2
#: Format 1 held zlib-compressed JSON; format 2 the compact form of ``mfa_fsm.stores.compact``.
FORMATS_READ = frozenset({1, 2})

#: How long a token is accepted after it was sealed, whatever the snapshot's deadline.
DEFAULT_MAX_AGE = 3600.0

#: The longest token :meth:`SealedState.seal` makes by default (characters). A browser keeps
#: a cookie of at most about 4,096 bytes with its name and attributes (RFC 6265 section 6.1;
#: werkzeug warns above 4,093); the web integration's flow cookie adds to the token its name
#: and attributes (about 130 bytes), the flow id, who checked the first factor and a
#: signature (about 250 more for the flow ids start() makes), so 3,400 leaves room for a
#: long user id. The web integration checks the whole header again before setting it.
DEFAULT_MAX_TOKEN_CHARS = 3400

_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PREFIX = struct.Struct(">BB")  # format version, key id length
_TIMES = struct.Struct(">II")  # issued at, expires at
_KEY_ID = re.compile(r"[!-~]{1,64}")  # printable ASCII, no spaces
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# Refuse absurd input before doing any work on it: a cookie holds 4 KiB, a form field a bit
# more; a snapshot's JSON is a few KiB at most.
_MAX_TOKEN_CHARS = 65536
_MAX_JSON_BYTES = 262144


class SealedState:
    """Seals snapshots into tokens for the client and opens them again; see the module docs.

    ``keys`` maps key ids to 32-byte keys, newest first (a mapping keeps its order); the first
    one seals. ``max_age`` (seconds) bounds how long one token is accepted; ``margin``
    (seconds) is how long after the snapshot's deadline it is still accepted (so a finished
    flow can be rendered), as for the server-side stores. ``ledger`` enables replay
    protection (an :class:`~mfa_fsm.stores.aio.AsyncVersionLedger`, such as an
    :class:`~mfa_fsm.stores.aio.AsyncStoreLedger`, for ``AsyncSealedEngine``; then only that
    engine can seal and open, and :meth:`seal` and :meth:`open` raise UsageError).
    ``max_token_chars`` bounds the tokens :meth:`seal` makes (default
    :data:`DEFAULT_MAX_TOKEN_CHARS`, sized for a browser cookie; None: no limit). A malformed
    key list raises :class:`~mfa_fsm.core.errors.UsageError`.
    """

    @checked
    def __init__(
        self,
        keys: Mapping[str, bytes] | Sequence[tuple[str, bytes]],
        *,
        max_age: float = DEFAULT_MAX_AGE,
        margin: float = DEFAULT_MARGIN,
        ledger: VersionLedger | AsyncVersionLedger | None = None,
        clock: Clock = time.time,
        max_token_chars: int | None = DEFAULT_MAX_TOKEN_CHARS,
    ) -> None:
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if isinstance(keys, str | bytes) or not all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in pairs
        ):
            raise UsageError(
                "keys must map key ids to keys ({'k1': key}) or list (key id, key) pairs; "
                "make a key with SealedState.generate_key()"
            )
        if not pairs:
            raise UsageError("SealedState needs at least one key; make one with generate_key()")
        self._keys: dict[str, AESGCM] = {}
        for key_id, key in pairs:
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise UsageError("a key id must be 1 to 64 printable ASCII characters, no spaces")
            if key_id in self._keys:
                raise UsageError(f"key id {key_id!r} is listed twice; give each key its own id")
            if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
                raise UsageError(
                    f"key {key_id!r} must be {_KEY_BYTES} bytes (AES-256); "
                    "make one with SealedState.generate_key()"
                )
            self._keys[key_id] = AESGCM(key)
        if not is_seconds(max_age) or not is_seconds(margin, zero=True):
            raise UsageError("max_age must be positive and margin must not be negative")
        if max_token_chars is not None and max_token_chars < 1024:
            raise UsageError(
                "max_token_chars must be at least 1024 (a token of a flow that holds two IdP "
                "tokens is about 1,500 characters), or None for no limit"
            )
        self.max_token_chars = max_token_chars
        self._sealing_id = pairs[0][0]
        self.max_age = max_age
        self.margin = margin
        self.ledger = ledger
        self._clock = clock

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte AES-256 key; store it with the application's secrets."""
        return AESGCM.generate_key(bit_length=_KEY_BYTES * 8)

    @checked
    def seal(self, snapshot: Snapshot, *, expected_version: int | None = None) -> str:
        """The token to hand to the client for ``snapshot``.

        Pass ``expected_version`` (the version the flow was opened at) for every step after
        the first. With a ledger this is a compare-and-set: it raises FlowConflict when
        another request advanced the flow first (or, with no ``expected_version``, when the
        flow is already recorded) and FlowNotFound when the ledger forgot the flow; without a
        ledger only the version rule is checked. UsageError if ``snapshot.version`` is not
        above ``expected_version``. SealedStateTooLarge when the token would be longer than
        ``max_token_chars``, checked before the ledger is asked; a completed flow whose
        result is not handed off yet is exempt (its hand-off, which the web integration
        makes in the same request, seals a small scrubbed snapshot; refusing it would lose
        a login the IdP completed). On any error no token is made and the ledger is
        unchanged.
        """
        return run(self.seal_plan(snapshot, expected_version=expected_version))

    def seal_plan(self, snapshot: Snapshot, *, expected_version: int | None = None) -> Plan[str]:
        """:meth:`seal` as a plan (:mod:`mfa_fsm.core.plans`), for the engines: the sealed
        engine runs it blocking, the async one awaits the ledger's ``advance``."""
        now = self._clock()
        expiry = min(now + self.max_age, expires_at(snapshot, self.margin))
        if expected_version is not None:
            check_advances(snapshot.flow_id, snapshot.version, expected_version)
        # Sealed first, recorded second: a token too large for the client is refused while
        # the client's current token is still the flow's newest.
        token = self._token(_what_is_needed(snapshot), now, expiry)
        awaits_hand_off = snapshot.result is not None and not snapshot.result.handed_off
        limit = self.max_token_chars
        if limit is not None and len(token) > limit and not awaits_hand_off:
            raise SealedStateTooLarge(snapshot.flow_id, len(token), limit)
        if self.ledger is not None:
            yield from call(
                self.ledger.advance,
                snapshot.flow_id,
                expected_version=expected_version,
                version=snapshot.version,
                expires_at=expiry,
            )
        return token

    def reseal(self, snapshot: Snapshot) -> str:
        """The token for ``snapshot`` when the ledger already records its version: a
        :meth:`seal` whose ledger write went through although its answer was lost (the
        connection to the ledger's store broke after the server applied it).

        Raises FlowConflict (``actual``: the recorded version, None when the flow is not
        recorded) unless the ledger records exactly ``snapshot.version``, and UsageError
        without a ledger (then :meth:`seal` cannot half-succeed). Writes nothing.
        """
        return run(self.reseal_plan(snapshot))

    def reseal_plan(self, snapshot: Snapshot) -> Plan[str]:
        """:meth:`reseal` as a plan (see :meth:`seal_plan`)."""
        if self.ledger is None:
            raise UsageError("reseal() is for a SealedState with a ledger; call seal()")
        recorded = yield from call(self.ledger.current, snapshot.flow_id)
        if recorded != snapshot.version:
            raise FlowConflict(snapshot.flow_id, snapshot.version, recorded)
        now = self._clock()
        expiry = min(now + self.max_age, expires_at(snapshot, self.margin))
        return self._token(_what_is_needed(snapshot), now, expiry)

    def _token(self, snapshot: Snapshot, now: float, expiry: float) -> str:
        key_id = self._sealing_id.encode("ascii")
        header = (
            _PREFIX.pack(FORMAT_VERSION, len(key_id))
            + key_id
            # Whole seconds keep the header small; floor() of the expiry errs on the short side.
            + _TIMES.pack(int(now), _clamp_u32(expiry))
        )
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = pack(snapshot)
        sealed = self._keys[self._sealing_id].encrypt(nonce, plain, header + _aad(snapshot.flow_id))
        return base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")

    @checked
    def open(self, token: str, *, flow_id: str) -> Snapshot:
        """The snapshot sealed in ``token``, if it is authentic, for ``flow_id``, and current.

        Raises SealedStateError when the token is not base64 or is truncated, names a key
        that is not configured (retired), fails authentication (any altered bit, or a token
        of another flow), has expired, or, with a ledger, is not the flow's newest token
        (replayed) or the ledger no longer knows the flow. Raises SnapshotError when an
        authentic snapshot no longer parses (sealed by another schema of mfa_fsm). Opening
        changes nothing, neither here nor in the ledger. A ``flow_id`` that is not a flow id
        raises InvalidInput (not a string) or FlowNotFound (``check_flow_id``).
        """
        return run(self.open_plan(token, flow_id=flow_id))

    def open_plan(self, token: str, *, flow_id: str) -> Plan[Snapshot]:
        """:meth:`open` as a plan (see :meth:`seal_plan`)."""
        check_flow_id(flow_id)
        if not isinstance(token, str):
            raise SealedStateError(
                "sealed state token must be a string (the token start() or send() returned); "
                "start the flow again"
            )
        data = _decode(token)
        if len(data) < _PREFIX.size:
            raise _truncated()
        fmt, id_length = _PREFIX.unpack_from(data)
        if fmt not in FORMATS_READ:
            raise SealedStateError(
                f"sealed state has format version {fmt}, this mfa_fsm reads "
                f"{sorted(FORMATS_READ)}; "
                "start the flow again"
            )
        header_length = _PREFIX.size + id_length + _TIMES.size
        if id_length == 0 or len(data) < header_length + _NONCE_BYTES + _TAG_BYTES:
            raise _truncated()
        # Nothing in the token is authenticated yet, so name the key id only if it is a
        # well-formed one: the message may be logged, and must not carry arbitrary bytes.
        key_id = data[_PREFIX.size : _PREFIX.size + id_length].decode("ascii", "replace")
        aead = self._keys.get(key_id)
        if aead is None:
            shown = repr(key_id) if _KEY_ID.fullmatch(key_id) else "a malformed key id"
            raise SealedStateError(
                f"sealed state names key {shown}, which is not configured (retired, or from "
                "another application); start the flow again"
            )
        issued_at, expiry = _TIMES.unpack_from(data, _PREFIX.size + id_length)
        header = data[:header_length]
        nonce = data[header_length : header_length + _NONCE_BYTES]
        try:
            plain = aead.decrypt(
                nonce, data[header_length + _NONCE_BYTES :], header + _aad(flow_id)
            )
        except InvalidTag:
            raise SealedStateError(
                f"sealed state for flow ref {flow_ref(flow_id)} failed authentication: it was "
                "altered or truncated, or it belongs to another flow; start the flow again"
            ) from None
        now = self._clock()
        if now >= expiry or now >= issued_at + self.max_age:
            raise SealedStateError(
                f"sealed state for flow ref {flow_ref(flow_id)} has expired; start the flow again"
            )
        snapshot = Snapshot.from_json(_inflate(plain)) if fmt == 1 else unpack(plain)
        if snapshot.flow_id != flow_id:  # pragma: no cover - the flow id is authenticated above
            raise SealedStateError(f"sealed state does not hold flow ref {flow_ref(flow_id)}")
        if self.ledger is not None:
            _check_newest((yield from call(self.ledger.current, snapshot.flow_id)), snapshot)
        return snapshot


def _what_is_needed(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with only what the client's next request needs, to keep tokens small.

    A flow that has ended (``Failed``, or ``Completed`` with its result handed off) takes no
    more events, so the provider's private context (packages, prompts, images, ids) is of no
    use to it: every context field that has a default goes back to it. What a page shows
    (the view: choices, challenge, failure, result) is kept. Any other snapshot is sealed
    whole.
    """
    result = snapshot.result
    if not snapshot.is_final or (result is not None and not result.handed_off):
        return snapshot
    context = snapshot.context
    if not attrs.has(type(context)):
        return snapshot
    defaults = {}
    for field in attrs.fields(type(context)):
        default = field.default
        if default is attrs.NOTHING or not field.init:
            continue
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        defaults[field.name] = default
    return attrs.evolve(snapshot, context=attrs.evolve(context, **defaults))


def _check_newest(newest: int | None, snapshot: Snapshot) -> None:
    if newest is None:
        raise SealedStateError(
            f"flow ref {flow_ref(snapshot.flow_id)} is not in the replay ledger (expired, or "
            "sealed without this ledger); start the flow again"
        )
    if snapshot.version < newest:
        raise SealedStateStale(
            f"sealed state for flow ref {flow_ref(snapshot.flow_id)} is at version "
            f"{snapshot.version} but the flow is at {newest}: an old token was replayed, or "
            "another request advanced the flow first; reload the page"
        )
    if snapshot.version != newest:
        raise SealedStateError(
            f"sealed state for flow ref {flow_ref(snapshot.flow_id)} is at version "
            f"{snapshot.version} but the flow is at {newest}: an old token was replayed; "
            "reload the page"
        )


def _aad(flow_id: str) -> bytes:
    return flow_id.encode("utf-8")


def _clamp_u32(seconds: float) -> int:
    return max(0, min(int(seconds), 0xFFFFFFFF))


def _truncated() -> SealedStateError:
    return SealedStateError("sealed state is truncated; start the flow again")


def _decode(token: str) -> bytes:
    # urlsafe_b64decode silently skips characters outside the alphabet, so check them first.
    if len(token) > _MAX_TOKEN_CHARS or not _BASE64URL.fullmatch(token):
        raise SealedStateError("sealed state is not URL-safe base64; start the flow again")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise SealedStateError(
            "sealed state is not valid base64 (truncated?); start the flow again"
        ) from None


def _inflate(plain: bytes) -> bytes:
    # Only our own keys sealed this, so it is not hostile; the bound still keeps a bug (or a
    # leaked key) from turning into a memory blow-up.
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(plain, _MAX_JSON_BYTES)
    except zlib.error:  # pragma: no cover - authentic tokens always hold valid zlib data
        raise SealedStateError("sealed state does not decompress; start the flow again") from None
    if not inflater.eof or inflater.unconsumed_tail:  # pragma: no cover - as above
        raise SealedStateError("sealed state is too large or incomplete; start the flow again")
    return text
