"""Entrust Identity as a Service (IDaaS): the Authentication API flow."""

from mfa_fsm.entrust.client import EntrustClient, EntrustConfig
from mfa_fsm.entrust.flow import EntrustContext, EntrustFlow, EntrustMachine

__all__ = ["EntrustClient", "EntrustConfig", "EntrustContext", "EntrustFlow", "EntrustMachine"]
