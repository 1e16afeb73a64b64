"""The compact form stores keep a snapshot in: its JSON, deflated against a preset dictionary.

A snapshot's JSON is mostly field names, state names and labels that every snapshot repeats,
plus the few hundred bytes of secrets it must hold (IdP tokens, session ids). Deflate
(RFC 1951) with a preset dictionary of those common parts stores the repeated text as short
back-references, so what a stored flow costs is little more than its secrets: an Entrust flow
waiting for a code, holding two 600-character tokens, packs its 2,000 bytes of JSON into
about 1,060. Layout::

    1 byte    format (1)
    rest      raw deflate of the snapshot's JSON, compressed against DICTIONARY_V1

A payload that starts with ``{`` is a record written before this form existed (plain JSON)
and is read as such, so stores keep loading their old records; new ones are always packed.

The dictionary is part of the stored format: changing one byte of it would make every record
packed with it unreadable. A better dictionary gets a new format number, and ``unpack`` keeps
reading the old one. Its text is the shape of the shipped providers' snapshots with every
value that varies (ids, tokens, times, names) left empty.
"""

from __future__ import annotations

import zlib

from mfa_fsm.core.errors import SnapshotError
from mfa_fsm.core.snapshot import Snapshot

#: The first byte of every packed payload; ``unpack`` refuses any other but ``{``.
FORMAT = 1

#: Deflate's preset dictionary for format 1. Never change it (see the module docs).
DICTIONARY_V1 = (
    b'{"schema":1,"provider":"cyberark","flow_id":"","user_id":"","state":"OobPending","versio'
    b'n":2,"created_at":0,"deadline":0,"context":{"base_url":"","tenant_id":"","session_id":""'
    b',"package":[[{"id":"","name":"UP","answer_type":"Text","label":"Password","prompt":"Ente'
    b'r Password"}],[{"id":"","name":"OTP","answer_type":"StartTextOob","label":"Mobile Authen'
    b'ticator","prompt":"Sent Mobile Authenticator request to your device. Please follow the i'
    b'nstructions to proceed with authentication or enter verification code here."},{"id":"","'
    b'name":"SMS","answer_type":"StartTextOob","label":"SMS... XXX-6789","prompt":"Sending a t'
    b"ext to mobile phone ending... 6789. Enter the code or click the link in the message to p"
    b'roceed with authentication.","detail":"6789"},{"id":"","name":"EMAIL","answer_type":"Sta'
    b'rtTextOob","label":"Email... @example.com","prompt":"Email sent to xxxx@example.com. Cli'
    b'ck the link or manually enter the code to authenticate.","detail":"***@example.com"},{"i'
    b'd":"","name":"SQ","answer_type":"Text","label":"Security Question","prompt":"Answer secu'
    b'rity question \'What is your pet\'s name?\':","questions":["What is your pet\'s name?"],"par'
    b't_ids":[""]}]],"index":1,"mechanism_id":"","answer_type":"StartTextOob","oob_started_at"'
    b':0,"last_answer_at":0},"choices":[{"id":"","kind":"push","label":"Mobile Authenticator"}'
    b',{"id":"","kind":"otp","label":"SMS... XXX-6789","detail":"6789"},{"id":"","kind":"otp",'
    b'"label":"Email... @example.com","detail":"***@example.com"},{"id":"","kind":"kba","label'
    b'":"Security Question"}],"challenge":{"factor":"","kind":"push","prompt":"Sent Mobile Aut'
    b"henticator request to your device. Please follow the instructions to proceed with authen"
    b'tication or enter verification code here."},"next_poll_at":0}{"schema":1,"provider":"ent'
    b'rust","flow_id":"","user_id":"","state":"Completed","version":3,"created_at":0,"deadline'
    b'":0,"context":{"first_factor":"EXTERNAL","token_expires_at":0,"factor":"OTP","remaining_'
    b'attempts":{"TOKEN":5,"OTP":5,"KBA":5,"GRID":5,"TEMP_ACCESS_CODE":5},"idp_time":0},"choic'
    b'es":[{"id":"TOKENPUSH","kind":"push","label":"Approve on the Entrust mobile app"},{"id":'
    b'"TOKEN","kind":"token","label":"Code from your token or authenticator app"},{"id":"OTP",'
    b'"kind":"otp","label":"One-time code sent to you","deliveries":["SMS","EMAIL","VOICE"],"d'
    b'efault_delivery":"SMS"},{"id":"KBA","kind":"kba","label":"Answer your security questions'
    b'"},{"id":"GRID","kind":"grid","label":"Cells from your grid card"},{"id":"TEMP_ACCESS_CO'
    b'DE","kind":"code","label":"Temporary access code"}],"result":{"user_id":"","display_name'
    b'":"","token":"","expires_at":0}}{"schema":1,"provider":"entrust","flow_id":"","user_id":'
    b'"","state":"OobPending","version":2,"created_at":0,"deadline":0,"context":{"first_factor'
    b'":"EXTERNAL","token":"","first_factor_token":"","token_expires_at":0,"factor":"TOKENPUSH'
    b'","remaining_attempts":{"TOKEN":5,"OTP":5,"KBA":5,"GRID":5,"TEMP_ACCESS_CODE":5},"idp_ti'
    b'me":0},"choices":[{"id":"TOKENPUSH","kind":"push","label":"Approve on the Entrust mobile'
    b' app"},{"id":"TOKEN","kind":"token","label":"Code from your token or authenticator app"}'
    b',{"id":"OTP","kind":"otp","label":"One-time code sent to you","deliveries":["SMS","EMAIL'
    b'","VOICE"],"default_delivery":"SMS"},{"id":"KBA","kind":"kba","label":"Answer your secur'
    b'ity questions"},{"id":"GRID","kind":"grid","label":"Cells from your grid card"},{"id":"T'
    b'EMP_ACCESS_CODE","kind":"code","label":"Temporary access code"}],"challenge":{"factor":"'
    b'TOKENPUSH","kind":"push","prompt":"Approve on the Entrust mobile app","accepts_code":fal'
    b'se},"next_poll_at":0}{"schema":1,"provider":"entrust","flow_id":"","user_id":"","state":'
    b'"","version":2,"created_at":0,"deadline":0,"context":{"first_factor":"EXTERNAL","token":'
    b'"","first_factor_token":"","token_expires_at":0,"factor":"OTP","remaining_attempts":{"TO'
    b'KEN":5,"OTP":5,"KBA":5,"GRID":5,"TEMP_ACCESS_CODE":5},"idp_time":0},"choices":[{"id":"TO'
    b'KENPUSH","kind":"push","label":"Approve on the Entrust mobile app"},{"id":"TOKEN","kind"'
    b':"token","label":"Code from your token or authenticator app"},{"id":"OTP","kind":"otp","'
    b'label":"One-time code sent to you","deliveries":["SMS","EMAIL","VOICE"],"default_deliver'
    b'y":"SMS"},{"id":"KBA","kind":"kba","label":"Answer your security questions"},{"id":"GRID'
    b'","kind":"grid","label":"Cells from your grid card"},{"id":"TEMP_ACCESS_CODE","kind":"co'
    b'de","label":"Temporary access code"}],"challenge":{"factor":"OTP","kind":"otp","prompt":'
    b'"Type the code sent by SMS","delivery":"SMS","attempts_left":5}}'
)

# Raw deflate (no zlib header or checksum: the JSON that comes out is checked field by field
# anyway) with a 16 KiB window, which holds the dictionary and a snapshot. For inputs of a
# few KiB, setting the compressor up costs more than compressing, and a smaller window and
# hash table (memLevel 5) make that set-up 3-4x cheaper than zlib's defaults; level 6 packs
# snapshots as small as level 9 does.
_WBITS = -14
_MEM_LEVEL = 5
_LEVEL = 6
# A snapshot's JSON is a few KiB; refuse to inflate a damaged or hostile record past this.
_MAX_JSON_BYTES = 262144


def pack(snapshot: Snapshot) -> bytes:
    """The compact form of ``snapshot`` (see the module docs)."""
    compressor = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1
    )
    text = snapshot.to_json().encode("utf-8")
    return b"\x01" + compressor.compress(text) + compressor.flush()


def unpack(payload: str | bytes) -> Snapshot:
    """The snapshot in a stored payload: packed, or the plain JSON of an older record.

    Raises :class:`SnapshotError` when the payload is neither (damaged, or written by
    another application) or its snapshot does not parse.
    """
    if isinstance(payload, str) or payload[:1] == b"{":
        return Snapshot.from_json(payload)
    if payload[:1] != b"\x01":
        raise SnapshotError(
            "stored flow is in an unknown format (written by a newer mfa_fsm, or not by "
            "mfa_fsm at all); start the flow again"
        )
    inflater = zlib.decompressobj(_WBITS, zdict=DICTIONARY_V1)
    try:
        text = inflater.decompress(payload[1:], _MAX_JSON_BYTES)
    except zlib.error:
        raise SnapshotError("stored flow does not decompress; start the flow again") from None
    if not inflater.eof or inflater.unconsumed_tail:
        raise SnapshotError("stored flow is truncated or too large; start the flow again")
    return Snapshot.from_json(text)
