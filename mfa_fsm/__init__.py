"""mfa_fsm: multi-factor authentication flows as explicit, persistable state machines.

A stateless web handler restores a flow from its snapshot, sends it one event, saves the new
snapshot and renders the view::

    flow = EntrustFlow.restore(saved_json, config=config)
    view = flow.send("submit_response", response=code)
    save(flow.snapshot().to_json())
"""

from mfa_fsm.core.errors import (
    EventNotAllowed,
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
from mfa_fsm.entrust import EntrustConfig, EntrustFlow

__all__ = [
    "Challenge",
    "Choice",
    "EntrustConfig",
    "EntrustFlow",
    "EventNotAllowed",
    "Flow",
    "FlowConflict",
    "FlowMachine",
    "FlowNotFound",
    "FlowView",
    "HttpRequest",
    "HttpResponse",
    "IdpError",
    "IdpReplyError",
    "InvalidInput",
    "MfaError",
    "Outcome",
    "RequestsTransport",
    "Result",
    "SealedStateError",
    "Snapshot",
    "SnapshotError",
    "StoreError",
    "Transport",
    "TransportError",
    "UsageError",
]
