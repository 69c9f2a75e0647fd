#!/usr/bin/env bash
# Runs the SDK suite (sdk/) against a real PocketBase 0.40.6, the reference the tests were
# validated on, instead of ringcast:
#
#   ./setup.sh && ./run-against-pocketbase.sh
#
# Each test file starts its own PocketBase (PB_BIN, default the one setup.sh installs) on a free
# port with a throw-away data dir and the public notify hook from sdk/fixtures/pb_hooks; the
# harness creates the `posts` and `sdk_other` collections with public rules as the superuser.
# With PB_URL (and PB_SU_EMAIL, PB_SU_PASS) it uses that running PocketBase instead.
set -euo pipefail
cd "$(dirname "$0")"
SDK_TARGET=pocketbase exec npm run --silent test:sdk
