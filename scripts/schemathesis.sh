#!/usr/bin/env bash
# Schemathesis against infra/openapi.yaml and the running service (`maxconf dev`: the Pexip
# simulator, an in-memory pool, auth off; no Azure needed). Fails on any 5xx other than a
# declared 503, on responses that do not match the schema (status, content type, headers,
# body), and on requests the schema calls invalid but the service accepts.
#
#   scripts/schemathesis.sh                 # bounded: SCHEMATHESIS_EXAMPLES (default 50) per
#                                           # operation, at most SCHEMATHESIS_MAX_TIME (default 120) s
#
# SCHEMATHESIS_SPEC=<file> tests another copy of the document.
# Uses the pinned tools in requirements-test.txt, installed into .venv-test (gitignored).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${SCHEMATHESIS_EXAMPLES:-50}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
SPEC="${SCHEMATHESIS_SPEC:-infra/openapi.yaml}"
VENV=.venv-test
TARGET="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$VENV/bin/schemathesis" ] || ! cmp -s requirements-test.txt "$VENV/.requirements"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-test.txt
  cp requirements-test.txt "$VENV/.requirements"
fi

cargo build --locked --quiet --bin maxconf
BIN="$TARGET/debug/maxconf"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOG="$(mktemp -t maxconf-schemathesis.XXXXXX.log)"
# Plenty of pool rooms: every create hands one out; the refill replaces it.
"$BIN" dev --port "$PORT" --rooms 50 >"$LOG" 2>&1 &
SERVICE=$!
stop() {
  kill "$SERVICE" 2>/dev/null || true
  wait "$SERVICE" 2>/dev/null || true
}
trap stop EXIT

for _ in $(seq 1 200); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/"; then break; fi
  if ! kill -0 "$SERVICE" 2>/dev/null; then
    echo "maxconf dev exited; its output:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.05
done

# The document's paths are APIM's (no /api prefix); the Function App serves them under /api.
# scripts/schemathesis.toml: which checks apply to an auth-off dev service, and 503 allowed
# where the document declares it.
# POST /rooms/bulk accepts up to 500 rooms a call, so a run makes thousands of rooms and
# DELETE /rooms then deletes them one Pexip call each: answers may take longer than the
# default 10 s limit on a debug build; 30 s is the bound here.
status=0
"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml --no-color run "$SPEC" \
  --url "http://127.0.0.1:$PORT/api" \
  --checks all \
  --exclude-checks ignored_auth,missing_required_header,positive_data_acceptance,allow_header_conformance \
  --max-examples "$EXAMPLES" \
  --max-time "$MAX_TIME" \
  --seed 7 \
  --workers 1 \
  --generation-database none \
  --request-timeout 30 \
  --max-response-time 30 ||
  status=$?
if [ "$status" -ne 0 ]; then
  echo "--- maxconf dev output (last 40 lines) ---" >&2
  tail -n 40 "$LOG" >&2
fi
rm -f "$LOG"
exit "$status"
