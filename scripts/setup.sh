#!/usr/bin/env bash
# Set up everything mfa_fsm's demo and tests need, on a machine that has only Python 3.11+:
# the servers the tests run for real (Redis, PostgreSQL), Graphviz for SVG diagrams, Debian's
# Chromium for the browser tests (Playwright drives it by its path; Playwright's own browser
# downloads are never used), and a virtual environment in .venv with the package and its dev
# tools. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEBIAN_PACKAGES=(redis-server postgresql graphviz chromium fonts-dejavu-core)

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v dot >/dev/null || missing+=(graphviz)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Pages need one font to render text in screenshots; chromium only recommends its fonts.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "setup: installing ${missing[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests start their own servers on random ports; the distribution's services are not needed.
    $SUDO systemctl disable --now redis-server postgresql >/dev/null 2>&1 || true
  else
    echo "setup: please install ${DEBIAN_PACKAGES[*]} (missing: ${missing[*]})" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last good install (a stamp holds its
# hash), so a rerun takes a second instead of a pip resolution.
stamp=.venv/.mfa-fsm-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import mfa_fsm" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import mfa_fsm" # fail here, clearly, if the install did not work
  echo "$want" >"$stamp"
fi

# CyberArk's own Python SDK, for the vendor-SDK tests (tests/vendor_sdk): in a virtual
# environment of its own, so its large dependency tree (paramiko, pywinrm, keyring,
# pydantic, ...) and pins never meet the project's.
ARK_SDK="ark-sdk-python==2.1.*"
if ! .venv-ark/bin/python -c "import ark_sdk_python" 2>/dev/null; then
  rm -rf .venv-ark
  "$PYTHON" -m venv .venv-ark
  .venv-ark/bin/python -m pip install -q "$ARK_SDK" 2>&1 | grep -v "^WARNING: Location" || true
  .venv-ark/bin/python -c "import ark_sdk_python.auth" # fail here if the install did not work
fi
