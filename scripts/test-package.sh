#!/usr/bin/env bash
# Tests the package scripts/package.sh built, the way the Functions host runs it:
#   - dist/app holds host.json, every function-*/function.json of the repository, and `maxconf`;
#     dist/maxconf.zip holds the same, with the run bit on `maxconf`;
#   - `maxconf` is a static executable (no glibc to mismatch with the host image);
#   - started from the app root with ONLY the environment the host gives it (app settings +
#     FUNCTIONS_CUSTOMHANDLER_PORT, no PATH, no HOME), pointed at an Azurite this script starts
#     and at the packaged binary's own Pexip simulator, it answers the host's start-up probe
#     (GET /), a forwarded POST /api/room/create, GET /api/health, and a timer invocation;
#   - then it is killed, as the host does.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
app="$root/dist/app"
zip="$root/dist/maxconf.zip"
bin="$app/maxconf"
uui="6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex"
tag="https://id.gov.bc.ca/idcheck/protected/video/MTIzNDU2LDc2NTQzMg"

fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
step() { echo "test-package: $*"; }

[[ -d "$app" && -f "$zip" ]] || fail "no package: run scripts/package.sh first"

# ---------------------------------------------------------------- layout
step "layout"
[[ -f "$app/host.json" ]] || fail "host.json missing"
for dir in function-*/; do
    dir="${dir%/}"
    cmp -s "$dir/function.json" "$app/$dir/function.json" || fail "$dir/function.json missing or stale in the package"
done
for dir in "$app"/function-*/; do
    name="$(basename "$dir")"
    [[ -d "$root/$name" ]] || fail "package has $name, which the repository does not"
done
python3 - "$zip" "$app" <<'PY' || fail "zip content"
import os, stat, sys, zipfile
zpath, app = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zpath) as z:
    entries = {i.filename: i for i in z.infolist()}
expected = {os.path.relpath(os.path.join(d, f), app).replace(os.sep, "/")
            for d, _, files in os.walk(app) for f in files} - {"local.settings.json"}
if set(entries) != expected:
    sys.exit(f"zip entries differ from dist/app: {sorted(set(entries) ^ expected)}")
mode = entries["maxconf"].external_attr >> 16
if not mode & stat.S_IXUSR:
    sys.exit(f"maxconf has no run bit in the zip (mode {oct(mode)})")
print(f"  zip: {len(entries)} entries, maxconf mode {oct(stat.S_IMODE(mode))}")
PY

# ---------------------------------------------------------------- the binary
step "binary"
[[ -x "$bin" ]] || fail "maxconf is not executable"
description="$(file -b "$bin")"
echo "  file: $description"
[[ "$description" == *ELF*x86-64* ]] || fail "not an x86-64 ELF executable"
[[ "$description" == *"statically linked"* || "$description" == *"static-pie linked"* ]] \
    || fail "not statically linked"
if ldd_out="$(ldd "$bin" 2>&1)"; then
    [[ "$ldd_out" == *"statically linked"* || "$ldd_out" == *"not a dynamic executable"* ]] \
        || fail "ldd lists shared libraries: $ldd_out"
fi

# ---------------------------------------------------------------- services
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do { wait "$pid"; } 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # wait_for <what> <seconds> <command…>
    local what="$1" seconds="$2"; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || return 1
        sleep 0.2
    done
    echo "  $what is up"
}

azurite="$root/node_modules/.bin/azurite-queue"
if [[ ! -x "$azurite" ]]; then
    step "npm ci (Azurite)"
    npm ci --no-audit --no-fund >/dev/null
fi
step "starting Azurite, the Pexip simulator and maxconf"
(cd "$work" && exec "$azurite" --inMemoryPersistence --silent --queueHost 127.0.0.1 --queuePort 0 \
    </dev/null >"$work/azurite.log" 2>&1) &
pids+=($!)
azurite_port() { sed -n 's|.*successfully listens on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/azurite.log" | head -1; }
azurite_ready() { [[ -n "$(azurite_port)" ]]; }
wait_for "Azurite" 60 azurite_ready || { cat "$work/azurite.log" >&2; fail "Azurite did not start"; }
queue_port="$(azurite_port)"

# The package carries no simulator: `maxconf dev` and `maxconf simulate` are not in it.
if "$bin" simulate --help >/dev/null 2>&1; then
    fail "the packaged binary must not carry the Pexip simulator"
fi
# The simulator comes from a development build instead.
sim_bin="$root/target/debug/maxconf"
[[ -x "$sim_bin" ]] || cargo build --locked --quiet
sim_port="$(free_port)"
"$sim_bin" simulate --port "$sim_port" </dev/null >"$work/simulator.log" 2>&1 &
pids+=($!)
wait_for "Pexip simulator" 30 curl -sf -o /dev/null -u dev:dev "http://127.0.0.1:$sim_port/api/admin/configuration/v1/conference/" \
    || { cat "$work/simulator.log" >&2; fail "the simulator did not start"; }

# Azurite's documented development account (public, the same everywhere).
account="devstoreaccount1"
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
port="$(free_port)"
# Only what the host passes: the app settings and the custom-handler variables.
(cd "$app" && exec env -i \
    FUNCTIONS_CUSTOMHANDLER_PORT="$port" \
    FUNCTIONS_CUSTOMHANDLER_WORKER_ID="8e0c3b57-0d44-4c4e-9d36-3c0a2d0f3a11" \
    FUNCTIONS_APP_ROOT_PATH="$app" \
    FUNCTIONS_WORKER_RUNTIME="custom" \
    FUNCTIONS_EXTENSION_VERSION="~4" \
    AzureWebJobsStorage="DefaultEndpointsProtocol=http;AccountName=$account;AccountKey=$account_key;QueueEndpoint=http://127.0.0.1:$queue_port/$account;" \
    POOL_QUEUE_NAME="package-pool" \
    DELETION_QUEUE_NAME="package-deletions" \
    POOL_WARMUP_SECS="0" \
    PEXIP_BASE_URL="http://127.0.0.1:$sim_port" \
    PEXIP_USERNAME="dev" \
    PEXIP_PASSWORD="dev" \
    AUTH_MODE="none" \
    LOG_FORMAT="json" \
    ./maxconf </dev/null >"$work/maxconf.log" 2>&1) &
maxconf_pid=$!
pids+=("$maxconf_pid")

probe() {
    kill -0 "$maxconf_pid" 2>/dev/null || { cat "$work/maxconf.log" >&2; fail "maxconf exited during start-up"; }
    curl -s -o /dev/null "http://127.0.0.1:$port/"
}
wait_for "maxconf (host start-up probe GET /)" 30 probe || { cat "$work/maxconf.log" >&2; fail "maxconf did not answer GET /"; }
status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")"
[[ "$status" == 2* ]] || fail "GET / answered $status"
echo "  GET / -> $status"

# ---------------------------------------------------------------- forwarded requests
forwarded() { # forwarded <method> <path> [curl args…]: as the host forwards a request
    local method="$1" path="$2"; shift 2
    curl -s -o "$work/body" -w '%{http_code}' -X "$method" "http://127.0.0.1:$port$path" \
        -H "x-functions-key: package-test-function-key" \
        -H "X-Azure-Functions-InvocationId: 6f1f3b1c-2a90-4c55-9d2b-8f0c6f2e1d3a" \
        -H "X-Azure-Functions-HostVersion: 4.1040.300.0" "$@"
}

status="$(forwarded POST "/api/room/create?uuiData=$uui")"
echo "  POST /api/room/create -> $status"
[[ "$status" == 200 ]] || { cat "$work/body" "$work/maxconf.log" >&2; fail "create answered $status"; }
python3 - "$work/body" "$tag" <<'PY' || fail "create's body"
import json, sys
room = json.load(open(sys.argv[1]))
assert room["tag"] == sys.argv[2], room["tag"]
assert "pin" not in room, "the host PIN is in the create response"
assert room["guest_pin"].isdigit() and room["aliases"][0]["alias"] == room["name"], room
print(f"  room {room['name']} (id {room['id']}), guest PIN of {len(room['guest_pin'])} digits, tag set")
PY

status="$(forwarded GET /api/health)"
echo "  GET /api/health -> $status $(cat "$work/body")"
[[ "$status" == 200 ]] || fail "health answered $status"

# A timer function, as the host invokes it (JSON protocol on the same port).
status="$(curl -s -o "$work/body" -w '%{http_code}' -X POST "http://127.0.0.1:$port/function-metrics" \
    -H 'Content-Type: application/json' \
    -d '{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"function-metrics","UtcNow":"2026-01-01T00:00:00Z","RandGuid":"0c2b1c3e-5f7a-4d8e-9b0a-1c2d3e4f5a6b"}}}')"
echo "  POST /function-metrics -> $status"
[[ "$status" == 200 ]] || { cat "$work/body" >&2; fail "the metrics invocation answered $status"; }
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "Outputs" in d and "Logs" in d, d' "$work/body" \
    || fail "the invocation reply is not the host protocol's"

# ---------------------------------------------------------------- killed, as the host does
{ kill -9 "$maxconf_pid" && wait "$maxconf_pid"; } 2>/dev/null || true
if grep -qE 'AccountKey|Eby8vdM02' "$work/maxconf.log"; then
    fail "the log mentions a secret"
fi
step "OK: static, starts with the host's environment only, answers the probe and forwarded requests"
