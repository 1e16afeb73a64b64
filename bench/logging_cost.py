"""What structlog's configuration costs one stateless step (``bench/engine_step.py``'s step).

mfa_fsm logs one structlog event per step and never configures structlog; the application
does. Each configuration below runs in a fresh interpreter (structlog caches loggers per
process, so configurations cannot share one), rounds interleaved, medians compared with the
step whose log event is filtered out by level:

* unconfigured: structlog's defaults (a development console renderer), writing to /dev/null;
* production, uncached: ``make_filtering_bound_logger(INFO)``, key-value rendering to a logger
  that drops the line, ``cache_logger_on_first_use=False``;
* production, cached: the same with ``cache_logger_on_first_use=True``;
* filtered: ``make_filtering_bound_logger(WARNING)`` and the cache: the INFO event of a
  successful step is dropped before any processor runs.

Run: python bench/logging_cost.py [--rounds 7] [--cycles 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = """
import logging, os, sys, time, gc
sys.path.insert(0, {here!r})
import structlog
from engine_step import make_step, selected_snapshot_json
saved = selected_snapshot_json()   # (before configuring: its own setup logs nothing here)
mode = {mode!r}
if mode == "unconfigured":
    sys.stdout = open(os.devnull, "w")
else:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.WARNING if mode == "filtered" else logging.INFO
        ),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=mode != "production, uncached",
    )
step = make_step(saved)
for _ in range(50):
    step()
gc.collect()
started = time.perf_counter()
for _ in range({cycles}):
    step()
sys.__stdout__.write(str((time.perf_counter() - started) / {cycles} * 1e6))
"""

MODES = ("unconfigured", "production, uncached", "production, cached", "filtered")


def run(mode: str, cycles: int) -> float:
    code = WORKER.format(here=str(HERE), mode=mode, cycles=cycles)
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            samples[mode].append(run(mode, args.cycles))
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    floor = medians["filtered"]
    print(f"{args.rounds} rounds x {args.cycles} steps, one interpreter per run; µs per step")
    for mode, median in medians.items():
        print(f"  {mode:22} median {median:7.1f}  {median / floor:5.2f}x filtered")
    print(json.dumps({"medians_us": {k: round(v, 1) for k, v in medians.items()}}))


if __name__ == "__main__":
    main()
