"""The snapshot codec alone: ``to_json`` and ``from_json`` of stored snapshots, in µs.

Every request of a stateless login reads one snapshot and writes one, so the codec is on
the hot path of every step. The snapshots are the stored-format fixtures of each provider
(``tests/stores/fixtures``: CyberArk waiting for a push and completed, Duo waiting for a
push, Entrust in SecondFactorSelected). With ``--against REV`` the codec of that git
revision (its ``mfa_fsm/core/snapshot.py``, loaded as a module of its own) runs in the same
rounds, interleaved, so the two are measured side by side on one machine state.

Run: python bench/snapshot_codec.py [--rounds 7] [--cycles 2000] [--against REV]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mfa_fsm.cyberark.flow  # noqa: E402 - registers the providers' contexts
import mfa_fsm.duo.flow  # noqa: E402
import mfa_fsm.entrust.flow  # noqa: E402, F401
from mfa_fsm.core import snapshot as current  # noqa: E402

FIXTURES = ROOT / "tests" / "stores" / "fixtures"
NAMES = ["cyberark_oob_pending", "cyberark_completed", "duo_oob_pending", "entrust_snapshot_0_1"]


def codec_of(revision: str) -> types.ModuleType:
    """``mfa_fsm/core/snapshot.py`` as it was at ``revision``, as a separate module whose
    ``Snapshot`` knows the same provider contexts."""
    # S603/S607: git from PATH, on this checkout, like a developer runs it.
    source = subprocess.run(  # noqa: S603
        ["git", "show", f"{revision}:mfa_fsm/core/snapshot.py"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"snapshot_at_{revision}")
    sys.modules[module.__name__] = module  # attrs resolves the classes' annotations here
    exec(compile(source, module.__name__, "exec"), module.__dict__)  # noqa: S102
    module.Snapshot.contexts.update(current.Snapshot.contexts)
    return module


def per_cycle(step: Callable[[], Any], cycles: int) -> float:
    started = time.perf_counter()
    for _ in range(cycles):
        step()
    return (time.perf_counter() - started) / cycles * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--against", help="a git revision whose codec runs alongside")
    args = parser.parse_args()
    codecs = {"current": current}
    if args.against:
        codecs[args.against] = codec_of(args.against)
    texts = {name: (FIXTURES / f"{name}.json").read_text().strip() for name in NAMES}
    samples: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for label, codec in codecs.items():
            for name, text in texts.items():
                snapshot = codec.Snapshot.from_json(text)
                read = per_cycle(lambda: codec.Snapshot.from_json(text), args.cycles)  # noqa: B023
                write = per_cycle(snapshot.to_json, args.cycles)
                samples.setdefault(f"{label} read {name}", []).append(read)
                samples.setdefault(f"{label} write {name}", []).append(write)
    medians = {key: round(statistics.median(values), 2) for key, values in samples.items()}
    print(f"{args.rounds} rounds x {args.cycles} cycles, codecs interleaved; µs per call")
    for key, value in medians.items():
        print(f"  {key:<48} {value:8.2f}")
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
