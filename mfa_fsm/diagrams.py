"""Diagrams of every flow, drawn from the same machine classes that run.

``diagrams/<provider>.mmd`` (Mermaid) is committed and checked by a test; ``.svg`` is written
too where Graphviz's ``dot`` is installed. :func:`mermaid` can highlight a live flow's state.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

from statemachine.contrib.diagram import DotGraphMachine, MermaidGraphMachine

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.registry import provider_flows


def flows() -> dict[str, type[Flow]]:
    """Every provider's flow, by provider name: the provider registry's, sorted by name."""
    return provider_flows()


_HIGHLIGHT = "classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px"


def svg_missing() -> str | None:
    """Why SVG cannot be drawn here (a one-line message saying what to install), or None.

    SVG needs both Graphviz's ``dot`` program and the ``pydot`` package (the
    ``mfa_fsm[diagrams]`` extra)."""
    if shutil.which("dot") is None:
        return "SVG diagrams need Graphviz's dot program on PATH (e.g. apt install graphviz)"
    try:
        importlib.import_module("pydot")
    except ImportError:
        return "SVG diagrams need pydot: pip install 'mfa_fsm[diagrams]'"
    return None


def states(flow: type[Flow]) -> list[str]:
    """The names of the flow's states, in the machine's order."""
    return [state.id for state in flow.machine.states]


def _check_state(flow: type[Flow], current_state: str | None) -> None:
    if current_state is not None and current_state not in states(flow):
        raise UsageError(
            f"{flow.provider} has no state {current_state!r}; its states are "
            + ", ".join(states(flow))
        )


def mermaid(flow: type[Flow], current_state: str | None = None) -> str:
    """The flow's machine as Mermaid ``stateDiagram-v2`` text, ``current_state`` highlighted.

    Raises UsageError for a state the flow does not have (the message lists its states)."""
    _check_state(flow, current_state)
    text: str = MermaidGraphMachine(flow.machine).get_mermaid().rstrip("\n")  # type: ignore[no-untyped-call]
    if current_state is not None:
        text += f"\n    {_HIGHLIGHT}\n    class {current_state} current"
    return text + "\n"


def svg(flow: type[Flow], current_state: str | None = None) -> bytes:
    """The flow's machine as SVG, ``current_state`` filled; needs Graphviz's ``dot`` on PATH
    and pydot (the ``diagrams`` extra). Raises UsageError, saying what to install, when
    either is missing, and for a state the flow does not have."""
    _check_state(flow, current_state)
    missing = svg_missing()
    if missing is not None:
        raise UsageError(missing)
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
    """Write ``<provider>.mmd`` (and ``.svg`` when ``dot`` is installed) for every flow.

    Every diagram is drawn before any file is written, so a failure writes nothing: with
    ``dot`` installed but pydot missing this raises UsageError (install the ``diagrams``
    extra) up front."""
    with_svg = shutil.which("dot") is not None
    if with_svg and (missing := svg_missing()) is not None:
        raise UsageError(f"{missing} (or take Graphviz off PATH for Mermaid files only)")
    drawn: list[tuple[Path, str | bytes]] = []
    for name, flow in flows().items():
        drawn.append((directory / f"{name}.mmd", mermaid(flow)))
        if with_svg:
            drawn.append((directory / f"{name}.svg", svg(flow)))
    directory.mkdir(parents=True, exist_ok=True)
    for path, content in drawn:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return [path for path, _ in drawn]


def stale(directory: Path) -> list[str]:
    """The providers whose committed Mermaid diagram differs from what the machine draws."""
    return [
        name
        for name, flow in flows().items()
        if not (directory / f"{name}.mmd").is_file()
        or (directory / f"{name}.mmd").read_text() != mermaid(flow)
    ]
