#!/usr/bin/env bash
# Day-one smoke test, after a deployment or a swap:
#
#   scripts/smoke.sh <apim-gateway-url>        # through APIM, as the callers use it
#   scripts/smoke.sh --dev <maxconf-dev-url>   # against `maxconf dev` (CI): Azure parts skipped
#
# Checks: health; an authenticated create and delete; a missing token gives 401; a missing
# uuiData gives the function's 400 (problem+json, not APIM's 404); the staging slot runs no
# timers (TIMERS_ENABLED=false there, true in production).
#
# Through APIM it needs (never printed):
#   MAXCONF_SMOKE_TENANT_ID, MAXCONF_SMOKE_CLIENT_ID, MAXCONF_SMOKE_CLIENT_SECRET
#       a test caller app registration holding the Rooms.Manage app role (client credentials;
#       a user's `az login` token carries no application role);
#   MAXCONF_SMOKE_SCOPE            api://<appId>/.default
#   MAXCONF_SMOKE_SUBSCRIPTION_KEY a key of the APIM product "maxconf";
#   MAXCONF_SMOKE_RESOURCE_GROUP, MAXCONF_SMOKE_APP   for the slot settings (az, logged in).
# Needs curl and jq. Exit status 0 only if every check that ran passed.
set -euo pipefail

dev=0
if [[ "${1:-}" == "--dev" ]]; then
    dev=1
    shift
fi
(( $# == 1 )) || { echo "usage: scripts/smoke.sh [--dev] <base-url>" >&2; exit 2; }
base="${1%/}"
for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "smoke: $tool is required" >&2; exit 2; }
done

# maxconf dev serves the Functions paths (/api/...); APIM publishes them without the prefix.
prefix=""
(( dev )) && prefix="/api"
uui='6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex'
failures=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"

ok() { echo "ok    $*"; }
skip() { echo "SKIP  $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }

# Credentials go to curl through a header file, never on its command line.
: >"$work/auth"
: >"$work/key-only"
if (( ! dev )); then
    for v in MAXCONF_SMOKE_TENANT_ID MAXCONF_SMOKE_CLIENT_ID MAXCONF_SMOKE_CLIENT_SECRET \
             MAXCONF_SMOKE_SCOPE MAXCONF_SMOKE_SUBSCRIPTION_KEY; do
        [[ -n "${!v:-}" ]] || { echo "smoke: $v is required through APIM (see the script's header)" >&2; exit 2; }
    done
    token="$(printf '%s' "$MAXCONF_SMOKE_CLIENT_SECRET" | curl -sS --fail-with-body \
        "https://login.microsoftonline.com/$MAXCONF_SMOKE_TENANT_ID/oauth2/v2.0/token" \
        -d grant_type=client_credentials \
        --data-urlencode "client_id=$MAXCONF_SMOKE_CLIENT_ID" \
        --data-urlencode "scope=$MAXCONF_SMOKE_SCOPE" \
        --data-urlencode "client_secret@-" | jq -r '.access_token // empty')" \
        || { echo "smoke: could not get a token for the test caller" >&2; exit 1; }
    [[ -n "$token" ]] || { echo "smoke: the token endpoint gave no access_token" >&2; exit 1; }
    printf 'Ocp-Apim-Subscription-Key: %s\n' "$MAXCONF_SMOKE_SUBSCRIPTION_KEY" >"$work/key-only"
    { cat "$work/key-only"; printf 'Authorization: Bearer %s\n' "$token"; } >"$work/auth"
fi

# request <method> <path> <header file> → status in $status, body in $work/body
request() {
    status="$(curl -sS -o "$work/body" -w '%{http_code}' -X "$1" -H @"$3" "$base$prefix$2")" || status=000
}

# 1. Health.
request GET /health "$work/key-only"
health="$(jq -r '.status // empty' "$work/body" 2>/dev/null || true)"
if [[ "$status" == 200 && ( "$health" == alive || "$health" == closed ) ]]; then
    ok "health: $status $health"
else
    fail "health: $status $(head -c 300 "$work/body")"
fi

# 2. Create and delete, authenticated.
request POST "/room/create?uuiData=$uui" "$work/auth"
problem="$(jq -r '.type // empty' "$work/body" 2>/dev/null || true)"
if [[ "$status" == 200 ]]; then
    name="$(jq -r '.name' "$work/body")"
    if jq -e 'has("pin") | not' "$work/body" >/dev/null && [[ -n "$name" && "$name" != null ]]; then
        ok "create: 200, room $name (no host pin)"
    else
        fail "create: 200 but not a constrained room without the host pin"
    fi
    request DELETE "/room/$name" "$work/auth"
    if [[ "$status" == 204 ]]; then ok "delete: 204"; else fail "delete $name: $status $(head -c 300 "$work/body")"; fi
elif [[ "$status" == 503 && "$problem" == urn:maxconf:problem:outside-service-hours ]]; then
    skip "create and delete: outside service hours (503 $problem); run again when open"
else
    fail "create: $status $(head -c 300 "$work/body")"
fi

# 3. A missing token is refused.
if (( dev )); then
    skip "missing token gives 401: needs Azure (maxconf dev runs with auth off)"
else
    request POST "/room/create?uuiData=$uui" "$work/key-only"
    if [[ "$status" == 401 ]]; then ok "missing token: 401"; else fail "missing token: $status, expected 401"; fi
fi

# 4. A missing uuiData is the function's 400 (problem+json), not APIM's 404.
request POST "/room/create" "$work/auth"
problem="$(jq -r '.type // empty' "$work/body" 2>/dev/null || true)"
if [[ "$status" == 400 && "$problem" == urn:maxconf:problem:* ]]; then
    ok "missing uuiData: 400 $problem"
else
    fail "missing uuiData: $status $(head -c 300 "$work/body"), expected the function's 400"
fi

# 5. The staging slot runs no timers.
if (( dev )); then
    skip "staging runs no timers (TIMERS_ENABLED): needs Azure (az functionapp config appsettings list)"
elif [[ -z "${MAXCONF_SMOKE_RESOURCE_GROUP:-}" || -z "${MAXCONF_SMOKE_APP:-}" ]] || ! command -v az >/dev/null; then
    fail "staging timers: set MAXCONF_SMOKE_RESOURCE_GROUP and MAXCONF_SMOKE_APP and log in with az"
else
    timers() {
        az functionapp config appsettings list -g "$MAXCONF_SMOKE_RESOURCE_GROUP" -n "$MAXCONF_SMOKE_APP" "$@" \
            --query "[?name=='TIMERS_ENABLED'].value | [0]" -o tsv
    }
    staging="$(timers --slot staging)"
    production="$(timers)"
    if [[ "$staging" == false && "$production" == true ]]; then
        ok "timers: staging TIMERS_ENABLED=false, production true"
    else
        fail "timers: staging TIMERS_ENABLED=${staging:-unset}, production ${production:-unset}"
    fi
fi

if (( failures )); then
    echo "smoke: $failures check(s) failed"
    exit 1
fi
echo "smoke: passed"
