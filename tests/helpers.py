"""A stateless handler in miniature: every step restores the flow from JSON, as a web
request that keeps nothing in memory would."""

from __future__ import annotations

from typing import Any

from mfa_fsm import Flow, FlowView


class StatelessClient:
    """Runs each event of one flow in a fresh context: JSON -> restore -> send -> JSON.

    ``settings`` are what the flow class takes besides the snapshot (``config=``,
    ``transport=``, ``clock=``); they are passed again on every restore, never stored.
    """

    def __init__(self, flow: Flow, **settings: Any) -> None:
        self.flow_class = type(flow)
        self.settings = settings
        self.saved = flow.snapshot().to_json()
        self.view = flow.view()

    def send(self, event: str, **data: Any) -> FlowView:
        flow = self.restore()
        self.view = flow.send(event, **data)
        self.saved = flow.snapshot().to_json()
        return self.view

    def restore(self) -> Flow:
        return self.flow_class.restore(self.saved, **self.settings)
