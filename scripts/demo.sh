#!/usr/bin/env bash
# Set up, then run the demo: the web login pages and both IdP emulators on loopback, with the
# embedded default store (SQLite in a temporary directory). Open the URL it prints; the
# emulator control page plays the user's phone. Ctrl-C stops. Extra arguments go to
# `mfa-fsm demo` (e.g. --sealed, --store URL). The terminal walk-through is
# `.venv/bin/mfa-fsm login --emulator` (add --provider cyberark for CyberArk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mfa-fsm demo --host 127.0.0.1 --port 8700 "$@"
