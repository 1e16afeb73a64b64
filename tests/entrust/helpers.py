"""A stateless handler in miniature: every step restores the flow from JSON, as a web
request that keeps nothing in memory would."""

from __future__ import annotations

from typing import Any

from mfa_fsm import EntrustConfig, EntrustFlow, FlowView, Transport


class StatelessClient:
    """Runs each event in a fresh context: JSON -> restore -> send -> JSON."""

    def __init__(self, config: EntrustConfig, transport: Transport, user_id: str, **start: Any):
        self.config = config
        self.transport = transport
        flow = EntrustFlow.start(config=config, user_id=user_id, transport=transport, **start)
        self.saved = flow.snapshot().to_json()
        self.view = flow.view()

    def send(self, event: str, **data: Any) -> FlowView:
        flow = EntrustFlow.restore(self.saved, config=self.config, transport=self.transport)
        self.view = flow.send(event, **data)
        self.saved = flow.snapshot().to_json()
        return self.view

    def flow(self) -> EntrustFlow:
        return EntrustFlow.restore(self.saved, config=self.config, transport=self.transport)
