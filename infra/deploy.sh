#!/usr/bin/env bash
# Deploys infra/main.bicep into a resource group, keeping each slot on the content share it runs
# from now.
#
#   infra/deploy.sh <resource-group> [more `az deployment group create` arguments, e.g. -p k=v]
#
# WEBSITE_CONTENTSHARE is not slot-sticky (Microsoft: "Don't make WEBSITE_CONTENTSHARE a slot
# setting"), so every swap exchanges the two slots' shares along with their code. Redeploying
# the template with fixed share names would, after an odd number of swaps, point production back
# at the previous version's share. This script reads the current values and passes them as
# productionContentShare / stagingContentShare; on the first deployment (no app yet) the
# template's defaults apply.
#
# MAXCONF_DEPLOY_DRY_RUN=1 prints the deployment command instead of running it.
set -euo pipefail

die() { echo "deploy: $*" >&2; exit 1; }

(( $# >= 1 )) || die "usage: infra/deploy.sh <resource-group> [az deployment arguments…]"
rg="$1"
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v az >/dev/null || die "the Azure CLI (az) is required"

app="$(az functionapp list -g "$rg" --query "[?tags.application=='maxconf'].name | [0]" -o tsv)"
share_args=()
if [[ -n "$app" ]]; then
    current_share() {
        az functionapp config appsettings list -g "$rg" -n "$app" "$@" \
            --query "[?name=='WEBSITE_CONTENTSHARE'].value | [0]" -o tsv
    }
    production="$(current_share)"
    staging="$(current_share --slot staging)"
    [[ -n "$production" && -n "$staging" ]] \
        || die "could not read WEBSITE_CONTENTSHARE of both slots of $app"
    [[ "$production" != "$staging" ]] \
        || die "both slots of $app use the content share $production: fix that before deploying"
    echo "deploy: $app runs from $production (production) and $staging (staging); keeping them"
    share_args=(-p "productionContentShare=$production" "stagingContentShare=$staging")
else
    echo "deploy: no maxconf app in $rg yet: first deployment, default content shares"
fi

cmd=(az deployment group create -g "$rg" -n main -f "$root/infra/main.bicep"
     -p "@$root/infra/main.parameters.json" ${share_args[@]+"${share_args[@]}"} "$@")
if [[ "${MAXCONF_DEPLOY_DRY_RUN:-}" == "1" ]]; then
    printf '%q ' "${cmd[@]}"
    echo
else
    "${cmd[@]}"
fi
