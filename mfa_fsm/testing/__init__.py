"""Loopback HTTP emulators of identity providers, for tests and demos."""

from mfa_fsm.testing._server import EmulatorServer, FaultPlan
from mfa_fsm.testing.cyberark import CyberArkEmulator
from mfa_fsm.testing.entrust import EntrustEmulator

__all__ = ["CyberArkEmulator", "EmulatorServer", "EntrustEmulator", "FaultPlan"]
