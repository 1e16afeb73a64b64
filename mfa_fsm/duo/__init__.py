"""Duo Auth API v2: the flow, request signing, request builders and reply parsing."""

from mfa_fsm.duo.client import DuoClient, DuoConfig
from mfa_fsm.duo.flow import DuoContext, DuoFlow, DuoMachine
from mfa_fsm.duo.signing import DuoCredentials

__all__ = ["DuoClient", "DuoConfig", "DuoContext", "DuoCredentials", "DuoFlow", "DuoMachine"]
