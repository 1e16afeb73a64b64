#!/usr/bin/env bash
# Run the demo: the web login pages and the IdP emulators on loopback, with the embedded
# default store (SQLite in a temporary directory). Open the URL it prints; the emulator
# control page plays the user's phone. Ctrl-C stops. Extra arguments go to `mfa-fsm demo`
# (e.g. --sealed, --store URL). The terminal walk-through is
# `.venv/bin/mfa-fsm login --provider entrust --emulator` (or --provider cyberark).
#
# Needs only Python 3.11+: no system packages, no servers, no browser. It makes (or updates)
# the virtual environment in .venv (or $MFA_FSM_VENV) with the web extra alone: the pages
# (Flask), their throttles (limits) and the embedded default store (SQLite through
# SQLAlchemy). --sealed needs the sealed extra too (the demo says so if it is missing).
# scripts/test.sh is the one that installs the test servers and the browser.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${MFA_FSM_VENV:-.venv}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "demo: needs Python 3.11 or newer as $PYTHON (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# --framework fastapi / django needs that framework's extra as well.
EXTRAS=web
previous=""
for argument in "$@"; do
  case "$previous $argument" in
    "--framework fastapi" | *" --framework=fastapi") EXTRAS=web,fastapi ;;
    "--framework django" | *" --framework=django") EXTRAS=web,django ;;
  esac
  previous=$argument
done
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import mfa_fsm.web.demo" # fail here, clearly, if the install did not work
exec "$VENV/bin/mfa-fsm" demo --host 127.0.0.1 --port 8700 "$@"
