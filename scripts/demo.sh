#!/usr/bin/env bash
# Set up, then run the demo: a terminal login against the bundled Entrust IDaaS emulator.
# Pick a second factor; a push is approved automatically after 3 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mfa-fsm login --emulator --user jsmith --approve-after 3 "$@"
