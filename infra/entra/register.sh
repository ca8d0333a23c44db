#!/usr/bin/env bash
# Entra ID side of maxconf, with the Azure CLI (az login first; needs rights to create app
# registrations and to grant app roles, e.g. Application Administrator or Cloud Application
# Administrator for the role grant). Safe to run again: every step checks what exists first.
#
#   1. the API's app registration (single tenant), application ID URI = AUTH_AUDIENCE
#      (api://<appId> unless --app-id-uri is given);
#   2. its app role Rooms.Manage (allowed member types: Application);
#   3. its service principal, with "assignment required" on, so only clients granted the role
#      get tokens for the API;
#   4. the grant of Rooms.Manage to the IDIM Video API's client (its application id), through
#      Microsoft Graph appRoleAssignedTo;
#   5. the operator app role Pool.Operate (allowed member types: User, so users and groups),
#      which the management routes and `maxconf … --api` require (AUTH_OPERATOR_ROLE);
#   6. a delegated scope (user_impersonation) with the Azure CLI pre-authorized for it, so an
#      operator's `az login` gets tokens for the API without a consent prompt;
#   7. the operator role granted to each --operator (object id of a user or a group).
#
# Usage:
#   infra/entra/register.sh --idim-client-id <appId of the IDIM Video API client> \
#       [--api-name maxconf-api] [--app-id-uri api://…] [--role Rooms.Manage] \
#       [--operator-role Pool.Operate] [--operator <user or group object id>]...
# Prints the values main.bicep needs (authAudience, authApiClientId, authTenantId).
# Needs: az (2.50+), python3 (to merge app roles without dropping existing ones).
set -euo pipefail

api_name="maxconf-api"
app_id_uri=""
role="Rooms.Manage"
operator_role="Pool.Operate"
operators=()
idim_client_id=""
# Microsoft Azure CLI, the public client operators sign in with.
azure_cli_app_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while (( $# > 0 )); do
    case "$1" in
        --api-name) api_name="$2"; shift 2 ;;
        --app-id-uri) app_id_uri="$2"; shift 2 ;;
        --role) role="$2"; shift 2 ;;
        --operator-role) operator_role="$2"; shift 2 ;;
        --operator) operators+=("$2"); shift 2 ;;
        --idim-client-id) idim_client_id="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "register: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ -n "$idim_client_id" ]] || { echo "register: --idim-client-id is required" >&2; exit 2; }
[[ "$operator_role" != "$role" ]] || { echo "register: --operator-role must differ from --role" >&2; exit 2; }

graph="https://graph.microsoft.com/v1.0"
tenant_id="$(az account show --query tenantId -o tsv)"
log() { echo "register: $*" >&2; }

# ---------------------------------------------------------------- 1. the app registration
app_id="$(az ad app list --display-name "$api_name" --query "[0].appId" -o tsv)"
if [[ -z "$app_id" ]]; then
    log "creating app registration $api_name"
    app_id="$(az ad app create --display-name "$api_name" --sign-in-audience AzureADMyOrg \
        --query appId -o tsv)"
else
    log "app registration $api_name exists ($app_id)"
fi
app_object_id="$(az ad app show --id "$app_id" --query id -o tsv)"
app_id_uri="${app_id_uri:-api://$app_id}"
current_uris="$(az ad app show --id "$app_id" --query "identifierUris" -o tsv)"
if ! grep -qxF "$app_id_uri" <<<"$current_uris"; then
    log "setting the application ID URI to $app_id_uri"
    az ad app update --id "$app_id" --identifier-uris "$app_id_uri"
fi

# ---------------------------------------------------------------- 2. the app role
role_id="$(az ad app show --id "$app_id" --query "appRoles[?value=='$role'].id | [0]" -o tsv)"
if [[ -z "$role_id" ]]; then
    role_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    log "adding app role $role ($role_id)"
    roles="$(az ad app show --id "$app_id" --query appRoles -o json | python3 -c '
import json, sys
roles = json.load(sys.stdin)
roles.append({
    "id": sys.argv[1],
    "value": sys.argv[2],
    "displayName": "Manage video rooms",
    "description": "Create, read, change and delete maxconf video rooms.",
    "allowedMemberTypes": ["Application"],
    "isEnabled": True,
})
print(json.dumps({"appRoles": roles}))
' "$role_id" "$role")"
    az rest --method PATCH --uri "$graph/applications/$app_object_id" \
        --headers "Content-Type=application/json" --body "$roles" >/dev/null
else
    log "app role $role exists ($role_id)"
fi

# ---------------------------------------------------------------- 3. the service principal
sp_id="$(az ad sp list --filter "appId eq '$app_id'" --query "[0].id" -o tsv)"
if [[ -z "$sp_id" ]]; then
    log "creating the service principal"
    sp_id="$(az ad sp create --id "$app_id" --query id -o tsv)"
fi
if [[ "$(az ad sp show --id "$sp_id" --query appRoleAssignmentRequired -o tsv)" != "true" ]]; then
    log "requiring app role assignment for tokens"
    az rest --method PATCH --uri "$graph/servicePrincipals/$sp_id" \
        --headers "Content-Type=application/json" \
        --body '{"appRoleAssignmentRequired": true}' >/dev/null
fi

# ---------------------------------------------------------------- 4. the grant to IDIM
client_sp_id="$(az ad sp list --filter "appId eq '$idim_client_id'" --query "[0].id" -o tsv)"
[[ -n "$client_sp_id" ]] || {
    log "no service principal for the IDIM client $idim_client_id in this tenant (az ad sp create --id $idim_client_id)"
    exit 1
}
granted="$(az rest --method GET --uri "$graph/servicePrincipals/$sp_id/appRoleAssignedTo" \
    --query "length(value[?principalId=='$client_sp_id' && appRoleId=='$role_id'])" -o tsv)"
if [[ "$granted" == "0" ]]; then
    log "granting $role to the IDIM client ($idim_client_id)"
    body="{\"principalId\":\"$client_sp_id\",\"resourceId\":\"$sp_id\",\"appRoleId\":\"$role_id\"}"
    # A new role can take a few seconds to reach Graph's replicas.
    for attempt in 1 2 3 4 5 6; do
        if az rest --method POST --uri "$graph/servicePrincipals/$sp_id/appRoleAssignedTo" \
            --headers "Content-Type=application/json" --body "$body" >/dev/null; then
            break
        fi
        (( attempt < 6 )) || { log "the grant failed"; exit 1; }
        sleep $((attempt * 5))
    done
else
    log "$role is already granted to the IDIM client"
fi

# ---------------------------------------------------------------- 5. the operator role
operator_role_id="$(az ad app show --id "$app_id" --query "appRoles[?value=='$operator_role'].id | [0]" -o tsv)"
if [[ -z "$operator_role_id" ]]; then
    operator_role_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    log "adding app role $operator_role ($operator_role_id) for users and groups"
    roles="$(az ad app show --id "$app_id" --query appRoles -o json | python3 -c '
import json, sys
roles = json.load(sys.stdin)
roles.append({
    "id": sys.argv[1],
    "value": sys.argv[2],
    "displayName": "Operate the room pool",
    "description": "Status, fill, drain, reap, garbage collection and maintenance of the maxconf room pool (maxconf --api).",
    "allowedMemberTypes": ["User"],
    "isEnabled": True,
})
print(json.dumps({"appRoles": roles}))
' "$operator_role_id" "$operator_role")"
    az rest --method PATCH --uri "$graph/applications/$app_object_id" \
        --headers "Content-Type=application/json" --body "$roles" >/dev/null
else
    log "app role $operator_role exists ($operator_role_id)"
fi

# ---------------------------------------------------------------- 6. scope, Azure CLI pre-authorized
api_json="$(az ad app show --id "$app_id" --query api -o json)"
scope_id="$(python3 -c '
import json, sys
api = json.loads(sys.argv[1]) or {}
print(next((s["id"] for s in api.get("oauth2PermissionScopes") or [] if s.get("value") == "user_impersonation"), ""))
' "$api_json")"
if [[ -z "$scope_id" ]]; then
    scope_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    log "adding the delegated scope user_impersonation ($scope_id)"
    body="$(python3 -c '
import json, sys
api = json.loads(sys.argv[1]) or {}
scopes = api.get("oauth2PermissionScopes") or []
scopes.append({
    "id": sys.argv[2], "value": "user_impersonation", "type": "Admin", "isEnabled": True,
    "adminConsentDisplayName": "Operate maxconf as the signed-in user",
    "adminConsentDescription": "Lets the operator tools call the maxconf management routes as the signed-in operator.",
})
print(json.dumps({"api": {"oauth2PermissionScopes": scopes}}))
' "$api_json" "$scope_id")"
    az rest --method PATCH --uri "$graph/applications/$app_object_id" \
        --headers "Content-Type=application/json" --body "$body" >/dev/null
    api_json="$(az ad app show --id "$app_id" --query api -o json)"
fi
if ! python3 -c '
import json, sys
api = json.loads(sys.argv[1]) or {}
sys.exit(0 if any(p.get("appId") == sys.argv[2] for p in api.get("preAuthorizedApplications") or []) else 1)
' "$api_json" "$azure_cli_app_id"; then
    log "pre-authorizing the Azure CLI ($azure_cli_app_id) for user_impersonation"
    body="$(python3 -c '
import json, sys
api = json.loads(sys.argv[1]) or {}
pre = api.get("preAuthorizedApplications") or []
pre.append({"appId": sys.argv[2], "delegatedPermissionIds": [sys.argv[3]]})
print(json.dumps({"api": {"preAuthorizedApplications": pre}}))
' "$api_json" "$azure_cli_app_id" "$scope_id")"
    az rest --method PATCH --uri "$graph/applications/$app_object_id" \
        --headers "Content-Type=application/json" --body "$body" >/dev/null
fi

# ---------------------------------------------------------------- 7. operators
for principal in "${operators[@]}"; do
    granted="$(az rest --method GET --uri "$graph/servicePrincipals/$sp_id/appRoleAssignedTo" \
        --query "length(value[?principalId=='$principal' && appRoleId=='$operator_role_id'])" -o tsv)"
    if [[ "$granted" != "0" ]]; then
        log "$operator_role is already granted to $principal"
        continue
    fi
    log "granting $operator_role to $principal"
    body="{\"principalId\":\"$principal\",\"resourceId\":\"$sp_id\",\"appRoleId\":\"$operator_role_id\"}"
    for attempt in 1 2 3 4 5 6; do
        if az rest --method POST --uri "$graph/servicePrincipals/$sp_id/appRoleAssignedTo" \
            --headers "Content-Type=application/json" --body "$body" >/dev/null; then
            break
        fi
        (( attempt < 6 )) || { log "the grant to $principal failed"; exit 1; }
        sleep $((attempt * 5))
    done
done

cat <<EOF
# Parameters for infra/main.bicep (and the app settings they become):
authTenantId=$tenant_id          # AUTH_TENANT_ID
authAudience=$app_id_uri         # AUTH_AUDIENCE (with authApiClientId)
authApiClientId=$app_id
authRequiredRole=$role           # AUTH_REQUIRED_ROLE
authOperatorRole=$operator_role  # AUTH_OPERATOR_ROLE
# The IDIM Video API asks for tokens with: scope=$app_id_uri/.default (client credentials)
# Operators (granted $operator_role): az login, then
#   MAXCONF_API=<operatorApiUrl output> MAXCONF_API_AUDIENCE=$app_id_uri maxconf status
EOF
