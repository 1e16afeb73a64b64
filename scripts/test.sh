#!/usr/bin/env bash
# Set up, then run every check: lint, format, types, and the whole test suite (unit tests,
# end-to-end tests over real HTTP to the emulators, real Redis and PostgreSQL servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check mfa_fsm tests bench
.venv/bin/ruff format --check mfa_fsm tests bench
.venv/bin/mypy
.venv/bin/python -m pytest --cov=mfa_fsm --cov-report=term "$@"
