"""Diagrams of every flow, drawn from the same machine classes that run.

``diagrams/<provider>.mmd`` (Mermaid) is committed and checked by a test; ``.svg`` is written
too where Graphviz's ``dot`` is installed. :func:`mermaid` can highlight a live flow's state.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

from statemachine.contrib.diagram import DotGraphMachine, MermaidGraphMachine

from mfa_fsm.core.flow import Flow
from mfa_fsm.cyberark import CyberArkFlow
from mfa_fsm.duo import DuoFlow
from mfa_fsm.entrust import EntrustFlow

#: Every provider flow, by provider name.
FLOWS: dict[str, type[Flow]] = {
    CyberArkFlow.provider: CyberArkFlow,
    DuoFlow.provider: DuoFlow,
    EntrustFlow.provider: EntrustFlow,
}

_HIGHLIGHT = "classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px"


def mermaid(flow: type[Flow], current_state: str | None = None) -> str:
    """The flow's machine as Mermaid ``stateDiagram-v2`` text, ``current_state`` highlighted."""
    text: str = MermaidGraphMachine(flow.machine).get_mermaid().rstrip("\n")  # type: ignore[no-untyped-call]
    if current_state is not None:
        text += f"\n    {_HIGHLIGHT}\n    class {current_state} current"
    return text + "\n"


def svg(flow: type[Flow], current_state: str | None = None) -> bytes:
    """The flow's machine as SVG, ``current_state`` filled; needs Graphviz's ``dot`` on PATH."""
    machine: object = flow.machine
    if current_state is not None:
        # The renderer fills the state a machine *instance* is in; the model only carries it.
        machine = flow.machine(model=SimpleNamespace(state=current_state))
    graph = DotGraphMachine(machine).get_graph()  # type: ignore[no-untyped-call]
    rendered: bytes = graph.create_svg()
    # The renderer names two helper nodes after id() of objects, which changes every run;
    # a fixed name keeps committed SVGs from changing when the machine did not.
    return re.sub(rb"__(initial|atomic)_\d+", rb"__\1", rendered)


def write_all(directory: Path) -> list[Path]:
    """Write ``<provider>.mmd`` (and ``.svg`` when ``dot`` is installed) for every flow."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, flow in sorted(FLOWS.items()):
        path = directory / f"{name}.mmd"
        path.write_text(mermaid(flow))
        written.append(path)
        if shutil.which("dot"):
            path = directory / f"{name}.svg"
            path.write_bytes(svg(flow))
            written.append(path)
    return written


def stale(directory: Path) -> list[str]:
    """The providers whose committed Mermaid diagram differs from what the machine draws."""
    return [
        name
        for name, flow in sorted(FLOWS.items())
        if not (directory / f"{name}.mmd").is_file()
        or (directory / f"{name}.mmd").read_text() != mermaid(flow)
    ]
