"""mfa_fsm: multi-factor authentication flows as explicit, persistable state machines.

A stateless web handler sends one event per request through an engine, which loads the flow,
makes the IdP calls, saves the new snapshot and returns the view to render::

    engine = Engine(SqlStore("sqlite:///flows.db"), [EntrustConfig(...)])
    view = engine.start("entrust", user_id="jsmith")
    view = engine.send(view.flow_id, "submit_first_factor")

The stores that need an optional library (``SqlStore``, ``RedisStore``, ``SealedState``) are
imported on first use, so ``import mfa_fsm`` needs none of those libraries.
"""

# Private aliases: every public name of this module is in __all__ (a test checks).
import importlib as _importlib
import typing as _typing

from mfa_fsm.core.errors import (
    EventNotAllowed,
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    IdpError,
    IdpReplyError,
    InvalidInput,
    MfaError,
    SealedStateError,
    SnapshotError,
    StoreError,
    TransportError,
    UsageError,
)
from mfa_fsm.core.flow import Flow, FlowMachine, Outcome
from mfa_fsm.core.snapshot import Challenge, Choice, FlowView, Result, Snapshot
from mfa_fsm.core.transport import HttpRequest, HttpResponse, RequestsTransport, Transport
from mfa_fsm.cyberark import CyberArkConfig, CyberArkFlow
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.engine import Engine, SealedEngine
from mfa_fsm.entrust import EntrustConfig, EntrustFlow
from mfa_fsm.stores.base import FlowStore, StoreLedger
from mfa_fsm.stores.memory import MemoryStore

if _typing.TYPE_CHECKING:
    from mfa_fsm.stores.redis import RedisStore
    from mfa_fsm.stores.sealed import SealedState
    from mfa_fsm.stores.sql import SqlStore

__all__ = [
    "Challenge",
    "Choice",
    "CyberArkConfig",
    "CyberArkFlow",
    "DuoConfig",
    "DuoCredentials",
    "DuoFlow",
    "Engine",
    "EntrustConfig",
    "EntrustFlow",
    "EventNotAllowed",
    "Flow",
    "FlowBusy",
    "FlowConflict",
    "FlowMachine",
    "FlowNotFound",
    "FlowStore",
    "FlowView",
    "HttpRequest",
    "HttpResponse",
    "IdpError",
    "IdpReplyError",
    "InvalidInput",
    "MemoryStore",
    "MfaError",
    "Outcome",
    "RedisStore",
    "RequestsTransport",
    "Result",
    "SealedEngine",
    "SealedState",
    "SealedStateError",
    "Snapshot",
    "SnapshotError",
    "SqlStore",
    "StoreError",
    "StoreLedger",
    "Transport",
    "TransportError",
    "UsageError",
]

# Names whose modules import an optional dependency: loaded when first asked for.
_LAZY = {
    "RedisStore": "mfa_fsm.stores.redis",
    "SealedState": "mfa_fsm.stores.sealed",
    "SqlStore": "mfa_fsm.stores.sql",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
