"""Diagrams are drawn from the machines; the committed ones and the README's must be current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mfa_fsm import diagrams
from mfa_fsm.verify import table

ROOT = Path(__file__).resolve().parent.parent


def test_committed_diagrams_are_current() -> None:
    """diagrams/<provider>.mmd equals what the machine draws now (run `mfa-fsm diagrams`)."""
    assert diagrams.stale(ROOT / "diagrams") == []


@pytest.mark.parametrize("provider", sorted(diagrams.flows()))
def test_readme_embeds_the_current_diagram(provider: str) -> None:
    """The README's Mermaid block of each flow is the machine's current drawing."""
    body = diagrams.mermaid(diagrams.flows()[provider]).strip()
    assert f"```mermaid\n{body}\n```" in (ROOT / "README.md").read_text()


def test_stale_diagram_is_detected(tmp_path: Path) -> None:
    """A diagram that differs from the machine, or is missing, is reported stale."""
    diagrams.write_all(tmp_path)
    assert diagrams.stale(tmp_path) == []
    first = sorted(diagrams.flows())[0]
    (tmp_path / f"{first}.mmd").write_text("stateDiagram-v2\n")
    assert first in diagrams.stale(tmp_path)
    (tmp_path / f"{first}.mmd").unlink()
    assert first in diagrams.stale(tmp_path)


def test_live_state_is_highlighted() -> None:
    """A live flow's diagram marks its current state."""
    text = diagrams.mermaid(diagrams.flows()["entrust"], current_state="OobPending")
    assert text.rstrip().endswith("class OobPending current")


def test_svg_renders() -> None:
    """Each flow renders to SVG with Graphviz (scripts/setup.sh installs it)."""
    assert shutil.which("dot"), "Graphviz's dot is missing: run scripts/setup.sh"
    for flow in diagrams.flows().values():
        assert diagrams.svg(flow).lstrip().startswith(b"<?xml")


@pytest.mark.parametrize("provider", sorted(diagrams.flows()))
def test_every_row_is_drawn_once_with_its_outcome(provider: str) -> None:
    """Each (state, event, outcome) row of the table is on exactly one arrow, from its state
    (or from "any live state" for cancel and expire), to its target, on a line that names the
    event and, in brackets, the outcome that guards it."""
    flow = diagrams.flows()[provider]
    drawn = diagrams.arrows(flow)
    for row in table(flow):
        carriers = [
            arrow
            for arrow in drawn
            if arrow.source in (row.state, diagrams.ANY_LIVE_STATE)
            and arrow.target == row.target
            and any(
                line.endswith(f"[{row.outcome.value}]") and row.event in line.split(" [")[0]
                for line in arrow.lines
            )
        ]
        assert len(carriers) == 1, f"{row} is drawn {len(carriers)} times"
    pairs = [(arrow.source, arrow.target) for arrow in drawn]
    assert len(pairs) == len(set(pairs)), "one arrow per source and target"


@pytest.mark.parametrize("provider", sorted(diagrams.flows()))
def test_each_arrow_names_the_idp_calls_its_events_declare(provider: str) -> None:
    """The request each handler declares with @on(calls=...) is on every arrow it can take
    (the path, as the client sends it); an event that calls nothing adds no call line."""
    flow = diagrams.flows()[provider]
    for arrow in diagrams.arrows(flow):
        text = "\n".join(arrow.lines)
        events = {
            event
            for line in arrow.lines
            if line.endswith("]")
            for event in line.split(" [")[0].split(" · ")
        }
        for event in events:
            for call in flow.handlers[event].calls if event in flow.handlers else ():
                assert call.partition(" (")[0] in text, f"{call} missing on {arrow}"


def test_the_cyberark_diagram_is_grouped_by_outcome() -> None:
    """Six states, one arrow per (source, target), and every arrow into a state carries the
    one outcome that leads there (CyberArk's outcomes each have one target)."""
    flow = diagrams.flows()["cyberark"]
    drawn = diagrams.arrows(flow)
    assert len(flow.machine.states) == 6
    assert len(drawn) == 23  # 50 rows
    for arrow in drawn:
        if arrow.source != diagrams.ANY_LIVE_STATE:
            assert len(arrow.outcomes) == 1, arrow
    into_failed = next(a for a in drawn if (a.source, a.target) == ("OobPending", "Failed"))
    calls = "POST /Security/AdvanceAuthentication (StartOOB | Answer | Poll | RetryOOB)"
    assert calls in "\n".join(into_failed.lines)


def test_the_dot_source_fills_the_current_state() -> None:
    text = diagrams.dot(diagrams.flows()["duo"], current_state="OobPending")
    assert 'OobPending [label="OOB pending", fillcolor="#ffd54f"]' in text
