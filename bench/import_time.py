"""Import time of an Entrust-only handler against ``import statemachine``, side by side.

Each variant runs in a fresh interpreter under ``python -X importtime``; its figure is the sum
of the cumulative times of the top-level imports the statement triggers (the interpreter's
own start-up imports, done before ``-c`` runs, are the same for every variant and left out).
Variants are interleaved, and medians of the rounds are compared, so a busy machine moves
the absolute figures more than the ratios. Each variant's fastest round is printed too: on a
machine shared with other work it is the steadier figure (the least disturbed run).

Every module is read from cached bytecode, as from an installed package (pip compiles a
wheel's modules when it installs them; the standard library and the site-packages come
compiled): the interpreters share a fresh ``PYTHONPYCACHEPREFIX`` directory, filled by one
unmeasured warm-up run of each variant, with ``PYTHONDONTWRITEBYTECODE`` unset. Without
that, a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` would compile mfa_fsm's own modules
from source on every run while python-statemachine's bytecode is cached, and the ratio would
measure the compiler. Nothing is written to the checkout or the virtualenv.

* ``import statemachine``: python-statemachine alone, the reference;
* Entrust-only handler: ``from mfa_fsm import EntrustConfig, EntrustFlow``;
* the same, then one flow built with the default transport (``requests`` loads then);
* everything: ``import mfa_fsm`` and every name of ``mfa_fsm.__all__``.

Run: python bench/import_time.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

STATEMACHINE = "import statemachine"
ENTRUST_ONLY = "Entrust-only import"
VARIANTS = {
    STATEMACHINE: STATEMACHINE,
    ENTRUST_ONLY: "from mfa_fsm import EntrustConfig, EntrustFlow",
    "Entrust-only, first default transport": (
        "from mfa_fsm import EntrustConfig, EntrustFlow\n"
        "from mfa_fsm.core.transport import default_transport\n"
        "default_transport(EntrustConfig(base_url='https://idp.invalid', application_id='a'))"
    ),
    "import mfa_fsm, every public name": (
        "import mfa_fsm\nfor name in mfa_fsm.__all__: getattr(mfa_fsm, name)"
    ),
}


def import_ms(statement: str, env: dict[str, str]) -> float:
    """Milliseconds of imports ``statement`` triggers in a fresh interpreter."""
    marker = "import sys; sys.stderr.write('--mark--\\n')\n"
    run = subprocess.run(  # noqa: S603 - our own interpreter and statements
        [sys.executable, "-X", "importtime", "-c", marker + statement],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    lines = run.stderr.split("--mark--\n", 1)[1].splitlines()
    total_us = 0
    for line in lines:
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  "):  # a top-level import; nested ones are inside it
            total_us += int(cumulative)
    return total_us / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="mfa-fsm-bytecode-") as bytecode:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = bytecode
        for statement in VARIANTS.values():  # warm-up: compile and cache every module once
            import_ms(statement, env)
        for _ in range(args.rounds):
            for name, statement in VARIANTS.items():
                samples[name].append(import_ms(statement, env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    fastest = {name: min(values) for name, values in samples.items()}
    reference, fastest_reference = medians[STATEMACHINE], fastest[STATEMACHINE]
    print(
        f"{args.rounds} rounds, variants interleaved, bytecode cached; "
        "ms of imports (python -X importtime)"
    )
    for name, median in medians.items():
        target = "  (target <= 1.5x)" if name == ENTRUST_ONLY else ""
        print(
            f"  {name:38} median {median:7.1f} {median / reference:5.2f}x"
            f"   fastest {fastest[name]:7.1f} {fastest[name] / fastest_reference:5.2f}x"
            f"  import statemachine{target}"
        )
    print(
        json.dumps(
            {
                "medians_ms": {k: round(v, 1) for k, v in medians.items()},
                "ratios": {k: round(v / reference, 2) for k, v in medians.items()},
                "fastest_ratios": {k: round(v / fastest_reference, 2) for k, v in fastest.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
