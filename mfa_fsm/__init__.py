"""mfa_fsm: multi-factor authentication flows as explicit, persistable state machines.

A stateless web handler sends one event per request through an engine, which loads the flow,
makes the IdP calls, saves the new snapshot and returns the view to render::

    engine = Engine(SqlStore("sqlite:///flows.db"), [EntrustConfig(...)])
    view = engine.start("entrust", verified_user=VerifiedUser("jsmith", checked_by="my app"))
    view = engine.send(view.flow_id, "submit_first_factor", client_ip="203.0.113.9")

Every name is imported on first use (``from mfa_fsm import EntrustFlow`` loads the core and
the Entrust flow, nothing else), so ``import mfa_fsm`` needs none of the optional libraries
(``SqlStore``, ``RedisStore``, ``SealedState``, ``Throttle`` need theirs) and an Entrust-only
handler never loads CyberArk, the stores or the web parts.
"""

# Private aliases: every public name of this module is in __all__ (a test checks).
import importlib as _importlib
import typing as _typing

# Only the errors are imported eagerly (they import nothing). Everything else is loaded on
# first use, so an Entrust-only handler never imports CyberArk, the stores or their
# libraries (SQLAlchemy, redis, cryptography): serverless handlers pay every import on each
# cold start.
from mfa_fsm.core.errors import (
    EventNotAllowed,
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    IdpError,
    IdpReplyError,
    InvalidInput,
    MfaError,
    ResendTooSoon,
    ResultUnavailable,
    SealedStateError,
    SealedStateStale,
    SealedStateTooLarge,
    SnapshotError,
    StepNotSaved,
    StoreError,
    StoreUnavailable,
    Throttled,
    ThrottleUnavailable,
    TransportError,
    UnmodelledOutcome,
    UsageError,
    VerifiedUserRequired,
)

if _typing.TYPE_CHECKING:  # pragma: no cover - read by type checkers, never run
    from mfa_fsm.core.flow import Flow, FlowMachine, Outcome
    from mfa_fsm.core.http import AsyncTransport
    from mfa_fsm.core.identity import VerifiedUser
    from mfa_fsm.core.logref import flow_ref, set_log_key
    from mfa_fsm.core.outcomes import OutcomeKind
    from mfa_fsm.core.registry import (
        provider_flow,
        provider_names,
        register_provider,
        unregister_provider,
    )
    from mfa_fsm.core.snapshot import Challenge, Choice, FlowView, Result, Snapshot
    from mfa_fsm.core.throttle import Throttle
    from mfa_fsm.core.transport import HttpRequest, HttpResponse, RequestsTransport, Transport
    from mfa_fsm.core.transport_async import HttpxTransport
    from mfa_fsm.cyberark import CyberArkConfig, CyberArkFlow
    from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
    from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine, Engine, SealedEngine
    from mfa_fsm.entrust import EntrustConfig, EntrustFlow
    from mfa_fsm.stores.aio import AsyncFlowStore, AsyncMemoryStore, AsyncStoreLedger
    from mfa_fsm.stores.base import FlowStore, StoreLedger
    from mfa_fsm.stores.memory import MemoryStore
    from mfa_fsm.stores.redis import RedisStore
    from mfa_fsm.stores.redis_async import AsyncRedisStore
    from mfa_fsm.stores.sealed import SealedState
    from mfa_fsm.stores.sql import SqlStore
    from mfa_fsm.stores.sql_async import AsyncSqlStore

__all__ = [
    "AsyncEngine",
    "AsyncFlowStore",
    "AsyncMemoryStore",
    "AsyncRedisStore",
    "AsyncSealedEngine",
    "AsyncSqlStore",
    "AsyncStoreLedger",
    "AsyncTransport",
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
    "HttpxTransport",
    "IdpError",
    "IdpReplyError",
    "InvalidInput",
    "MemoryStore",
    "MfaError",
    "Outcome",
    "OutcomeKind",
    "RedisStore",
    "RequestsTransport",
    "ResendTooSoon",
    "Result",
    "ResultUnavailable",
    "SealedEngine",
    "SealedState",
    "SealedStateError",
    "SealedStateStale",
    "SealedStateTooLarge",
    "Snapshot",
    "SnapshotError",
    "SqlStore",
    "StepNotSaved",
    "StoreError",
    "StoreLedger",
    "StoreUnavailable",
    "Throttle",
    "ThrottleUnavailable",
    "Throttled",
    "Transport",
    "TransportError",
    "UnmodelledOutcome",
    "UsageError",
    "VerifiedUser",
    "VerifiedUserRequired",
    "flow_ref",
    "provider_flow",
    "provider_names",
    "register_provider",
    "set_log_key",
    "unregister_provider",
]

# Public name -> the module that defines it, imported when the name is first asked for.
_LAZY = {
    "AsyncEngine": "mfa_fsm.engine",
    "AsyncFlowStore": "mfa_fsm.stores.aio",
    "AsyncMemoryStore": "mfa_fsm.stores.aio",
    "AsyncRedisStore": "mfa_fsm.stores.redis_async",
    "AsyncSealedEngine": "mfa_fsm.engine",
    "AsyncSqlStore": "mfa_fsm.stores.sql_async",
    "AsyncStoreLedger": "mfa_fsm.stores.aio",
    "AsyncTransport": "mfa_fsm.core.http",
    "Challenge": "mfa_fsm.core.snapshot",
    "Choice": "mfa_fsm.core.snapshot",
    "CyberArkConfig": "mfa_fsm.cyberark.client",
    "CyberArkFlow": "mfa_fsm.cyberark.flow",
    "DuoConfig": "mfa_fsm.duo.client",
    "DuoCredentials": "mfa_fsm.duo.signing",
    "DuoFlow": "mfa_fsm.duo.flow",
    "Engine": "mfa_fsm.engine",
    "EntrustConfig": "mfa_fsm.entrust.client",
    "EntrustFlow": "mfa_fsm.entrust.flow",
    "Flow": "mfa_fsm.core.flow",
    "FlowMachine": "mfa_fsm.core.flow",
    "FlowStore": "mfa_fsm.stores.base",
    "FlowView": "mfa_fsm.core.snapshot",
    "HttpRequest": "mfa_fsm.core.http",
    "HttpResponse": "mfa_fsm.core.http",
    "HttpxTransport": "mfa_fsm.core.transport_async",
    "MemoryStore": "mfa_fsm.stores.memory",
    "Outcome": "mfa_fsm.core.flow",
    "OutcomeKind": "mfa_fsm.core.outcomes",
    "RedisStore": "mfa_fsm.stores.redis",
    "RequestsTransport": "mfa_fsm.core.transport",
    "Result": "mfa_fsm.core.snapshot",
    "SealedEngine": "mfa_fsm.engine",
    "SealedState": "mfa_fsm.stores.sealed",
    "Snapshot": "mfa_fsm.core.snapshot",
    "SqlStore": "mfa_fsm.stores.sql",
    "StoreLedger": "mfa_fsm.stores.base",
    "Throttle": "mfa_fsm.core.throttle",
    "Transport": "mfa_fsm.core.http",
    "VerifiedUser": "mfa_fsm.core.identity",
    "flow_ref": "mfa_fsm.core.logref",
    "provider_flow": "mfa_fsm.core.registry",
    "provider_names": "mfa_fsm.core.registry",
    "register_provider": "mfa_fsm.core.registry",
    "set_log_key": "mfa_fsm.core.logref",
    "unregister_provider": "mfa_fsm.core.registry",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # asked once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
