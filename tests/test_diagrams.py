"""Diagrams are drawn from the machines; the committed ones and the README's must be current."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mfa_fsm import diagrams

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
def test_every_transition_is_drawn(provider: str) -> None:
    """Each transition of the machine, with its guard, has its own edge in the drawing (the
    renderer draws one edge per source, target and event, so guards must not share one)."""
    flow = diagrams.flows()[provider]
    lines = diagrams.mermaid(flow).splitlines()
    for state in flow.machine.states:
        for transition in state.transitions:
            guards = ", ".join(str(cond) for cond in transition.cond)
            label = transition.event.replace("_", " ").capitalize()
            label += f" [{guards}]" if guards else ""
            edge = f"{state.id} --> {transition.target.id} : {label}"
            assert edge in (line.strip() for line in lines), f"not drawn: {edge}"
