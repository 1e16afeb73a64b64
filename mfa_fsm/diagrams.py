"""Diagrams of every flow, drawn from the same tables that run.

``diagrams/<provider>.mmd`` (Mermaid) is committed and checked by a test; ``.svg`` is written
too where Graphviz's ``dot`` is installed. :func:`mermaid` can highlight a live flow's state.

What a reviewer reads on each arrow: the events that take it, each with the shared outcome
that guards it in brackets (``submit_response · poll [completed]``), then the IdP request the
events' handlers declare (``@on(..., calls="POST /path")``; calls to one path are merged,
``POST /Security/AdvanceAuthentication (Answer | Poll)``). One arrow per (source, target):
every row of the table is on exactly one arrow, grouped by outcome, so a flow whose outcomes
always lead to the same state (CyberArk) draws as few arrows as it has distinct moves.
``cancel`` and ``expire``, which every live state has (``mfa-fsm verify`` checks it), are
drawn once, from "any live state", instead of on every state. Arrows are coloured by
target: green into ``Completed``, red into ``Failed``, grey for cancel and expire.
"""

from __future__ import annotations

import importlib
import re
import shutil
from pathlib import Path
from typing import Any

import attrs

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.outcomes import OutcomeKind
from mfa_fsm.core.registry import provider_flows
from mfa_fsm.verify import table


def flows() -> dict[str, type[Flow]]:
    """Every provider's flow, by provider name: the provider registry's, sorted by name."""
    return provider_flows()


_HIGHLIGHT = "classDef current fill:#ffd54f,stroke:#e65100,stroke-width:3px"
#: Outcomes that end a flow without the IdP's verdict on the user.
_ENDINGS = frozenset({OutcomeKind.CANCELLED, OutcomeKind.EXPIRED})


@attrs.frozen
class Arrow:
    """One arrow of a diagram: every row of the table from ``source`` to ``target``.

    ``lines`` are what the arrow says, one outcome group per line (``events [outcome]``),
    each followed by the IdP requests of those events when they differ from the line
    before; ``outcomes`` the outcomes it carries, in the vocabulary's order.
    """

    source: str
    target: str
    lines: tuple[str, ...]
    outcomes: tuple[OutcomeKind, ...]


#: The source of the arrow that stands for the ending rows of every live state.
ANY_LIVE_STATE = "any live state"


def arrows(flow: type[Flow]) -> list[Arrow]:
    """The flow's table as arrows, in the machine's state order, then the target's.

    When every live state ends the same way on ``cancel`` and ``expire`` (to ``Failed``),
    those rows are one arrow from :data:`ANY_LIVE_STATE`, last."""
    order = {state.id: index for index, state in enumerate(flow.machine.states)}
    order[ANY_LIVE_STATE] = -1
    rows = table(flow)
    live = [state.id for state in flow.machine.states if not state.final]
    ending = [row for row in rows if row.event in ("cancel", "expire")]
    shared = {(row.event, row.outcome, row.target) for row in ending}
    if len(ending) == len(live) * len(shared) and {row.state for row in ending} == set(live):
        rows = [row for row in rows if row not in ending]
        rows += [attrs.evolve(row, state=ANY_LIVE_STATE) for row in ending if row.state == live[0]]
    grouped: dict[tuple[str, str], dict[OutcomeKind, list[str]]] = {}
    for row in rows:
        by_outcome = grouped.setdefault((row.state, row.target), {})
        by_outcome.setdefault(row.outcome, []).append(row.event)
    drawn: list[Arrow] = []
    for (source, target), by_outcome in sorted(
        grouped.items(), key=lambda item: (order[item[0][0]] % len(order), order[item[0][1]])
    ):
        lines: list[str] = []
        last_calls: list[str] = []
        outcomes = sorted(by_outcome, key=list(OutcomeKind).index)
        for outcome in outcomes:
            events = _in_event_order(flow, by_outcome[outcome])
            lines.append(f"{' · '.join(events)} [{outcome.value}]")
            calls = _calls(flow, events)
            if calls and calls != last_calls:
                lines += calls
            last_calls = calls
        drawn.append(Arrow(source, target, tuple(lines), tuple(outcomes)))
    return drawn


def _in_event_order(flow: type[Flow], events: list[str]) -> list[str]:
    declared = [str(event.id) for event in flow.machine.events]  # type: ignore[attr-defined]
    return sorted(set(events), key=declared.index)


def _calls(flow: type[Flow], events: list[str]) -> list[str]:
    """The events' IdP requests, in order; ``X (a)`` and ``X (b)`` merge into ``X (a | b)``."""
    details: dict[str, list[str]] = {}
    for event in events:
        handler = flow.handlers.get(event)
        for call in handler.calls if handler is not None else ():
            request, _, detail = call.partition(" (")
            merged = details.setdefault(request, [])
            for part in detail.rstrip(")").split(" | ") if detail else ():
                if part not in merged:
                    merged.append(part)
    return [
        f"{request} ({' | '.join(merged)})" if merged else request
        for request, merged in details.items()
    ]


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
    """The flow's table as Mermaid ``stateDiagram-v2`` text, ``current_state`` highlighted.

    Raises UsageError for a state the flow does not have (the message lists its states)."""
    _check_state(flow, current_state)
    out = ["stateDiagram-v2", "    direction TB"]
    for state in flow.machine.states:
        if state.name != state.id:
            out.append(f'    state "{state.name}" as {state.id}')
    for state in flow.machine.states:
        if state.initial:
            out.append(f"    [*] --> {state.id}")
    for state in flow.machine.states:
        if state.final:
            out.append(f"    {state.id} --> [*]")
    for arrow in arrows(flow):
        label = "<br/>".join(
            line.replace("{", "#123;").replace("}", "#125;") for line in arrow.lines
        )
        source = arrow.source
        if source == ANY_LIVE_STATE:
            source = "AnyLiveState"
            out.append(f'    state "{ANY_LIVE_STATE}" as {source}')
        out.append(f"    {source} --> {arrow.target} : {label}")
    if current_state is not None:
        out += [f"    {_HIGHLIGHT}", f"    class {current_state} current"]
    return "\n".join(out) + "\n"


def dot(flow: type[Flow], current_state: str | None = None) -> str:
    """The flow's table as Graphviz DOT text (what :func:`svg` renders); needs pydot."""
    return str(_graph(flow, current_state).to_string())


def _graph(flow: type[Flow], current_state: str | None) -> Any:
    """The diagram as a pydot graph (pydot ships no type information)."""
    _check_state(flow, current_state)
    pydot: Any = importlib.import_module("pydot")
    graph = pydot.Dot(
        flow.provider,
        graph_type="digraph",
        rankdir="TB",
        nodesep="0.6",
        ranksep="0.9",
        fontname="Helvetica",
        label=f"{flow.provider}: {flow.__name__}",
        labelloc="t",
        fontsize="16",
    )
    graph.set_node_defaults(
        shape="box", style="rounded,filled", fillcolor="#f5f5f5", fontname="Helvetica"
    )
    graph.set_edge_defaults(fontname="Helvetica", fontsize="9")
    for state in flow.machine.states:
        fill = "#ffd54f" if state.id == current_state else _FILLS.get(state.id, "#f5f5f5")
        extra = {"peripheries": "2"} if state.final else {}
        graph.add_node(pydot.Node(state.id, label=state.name, fillcolor=fill, **extra))
        if state.initial:
            graph.add_node(pydot.Node("__initial", shape="point", width="0.15", label=""))
            graph.add_edge(pydot.Edge("__initial", state.id))
    for arrow in arrows(flow):
        colour = _colour(arrow)
        source = arrow.source
        if source == ANY_LIVE_STATE:
            source = "__any"
            graph.add_node(
                pydot.Node(
                    source, label=ANY_LIVE_STATE, shape="plaintext", style="", fontcolor=colour
                )
            )
        style = {"style": "dashed"} if set(arrow.outcomes) <= _ENDINGS else {}
        label = "".join(_dot_escape(line) + "\\l" for line in arrow.lines)
        graph.add_edge(
            pydot.Edge(source, arrow.target, label=label, color=colour, fontcolor=colour, **style)
        )
    return graph


_FILLS = {"Completed": "#c8e6c9", "Failed": "#ffcdd2"}


def _colour(arrow: Arrow) -> str:
    if arrow.target == "Completed":
        return "#2e7d32"
    if arrow.target == "Failed":
        return "#9e9e9e" if set(arrow.outcomes) <= _ENDINGS else "#c62828"
    return "#263238"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def svg(flow: type[Flow], current_state: str | None = None) -> bytes:
    """The flow's table as SVG, ``current_state`` filled; needs Graphviz's ``dot`` on PATH
    and pydot (the ``diagrams`` extra). Raises UsageError, saying what to install, when
    either is missing, and for a state the flow does not have."""
    _check_state(flow, current_state)
    missing = svg_missing()
    if missing is not None:
        raise UsageError(missing)
    rendered: bytes = _graph(flow, current_state).create_svg()
    # Graphviz stamps its version in a comment; keep committed SVGs stable across versions.
    return re.sub(rb"<!-- Generated by graphviz version [^>]*-->\n", b"", rendered)


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
