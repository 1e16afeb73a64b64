"""Test helpers for mfa_fsm users, as ``structlog.testing`` is for structlog's.

- :class:`EntrustEmulator`, :class:`CyberArkEmulator`, :class:`DuoEmulator`: the IdPs as real
  HTTP servers on loopback, with demo users, readable codes, push control and fault injection.
- :class:`ScriptedTransport` and :func:`json_reply`: answer a flow's calls from a script.
- :class:`SecretRecorder` and :func:`find_leaks`: prove no secret reached a log or message.
- :mod:`mfa_fsm.testing.control`: drive a running emulator over its ``/_emulator/`` routes.
"""

from mfa_fsm.testing._server import EmulatorServer, FaultPlan
from mfa_fsm.testing.cyberark import CyberArkEmulator
from mfa_fsm.testing.duo import DuoEmulator
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply, network_down

__all__ = [
    "CyberArkEmulator",
    "DuoEmulator",
    "EmulatorServer",
    "EntrustEmulator",
    "FaultPlan",
    "ScriptedTransport",
    "SecretRecorder",
    "find_leaks",
    "json_reply",
    "network_down",
]
