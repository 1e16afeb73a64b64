"""CyberArk Identity (formerly Centrify / Idaptive): the StartAuthentication and
AdvanceAuthentication flow."""

from mfa_fsm.cyberark.client import CyberArkClient, CyberArkConfig
from mfa_fsm.cyberark.flow import CyberArkContext, CyberArkFlow, CyberArkMachine

__all__ = [
    "CyberArkClient",
    "CyberArkConfig",
    "CyberArkContext",
    "CyberArkFlow",
    "CyberArkMachine",
]
