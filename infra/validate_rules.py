"""Deployment rules infra/validate.sh enforces (step 7): each guards a fix that a first real
deployment needed (issue 13) and fails if it comes back. Text-level checks over the Bicep, the
APIM policies, openapi documents and host.json; run from the repository root."""

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
infra = root / "infra"
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def text(rel):
    return (root / rel).read_text()


def strip_comments(bicep):
    return re.sub(r"(?<![:'])//[^\n]*", "", bicep)


bicep = {p.relative_to(root).as_posix(): strip_comments(p.read_text()) for p in infra.rglob("*.bicep")}
app = bicep["infra/modules/functionapp.bicep"]
main = bicep["infra/main.bicep"]

# 1. App setting names: letters, digits, underscores only (App Service on Linux takes no dots
#    or hyphens); no AzureWebJobs.<function>.Disabled; TIMERS_ENABLED is the slot-sticky switch.
for rel in ("infra/main.bicep", "infra/modules/functionapp.bicep"):
    for name in re.findall(r"name:\s*'([^']*)'\s*\n\s*value:", bicep[rel]):
        check(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{rel}: app setting name {name!r} is not letters, digits and underscores")
for rel, src in bicep.items():
    check("AzureWebJobs." not in src, f"{rel}: AzureWebJobs.<function>.Disabled settings do not work with hyphenated names on Linux: use TIMERS_ENABLED")
sticky = re.search(r"appSettingNames:\s*\[(.*?)\]", app, re.S)
sticky_names = re.findall(r"'([^']*)'", sticky.group(1)) if sticky else []
check(sticky_names == ["TIMERS_ENABLED"], f"functionapp.bicep: slot-sticky settings must be exactly TIMERS_ENABLED, found {sticky_names}")


def slot_settings(var):
    m = re.search(rf"var {var} = concat\((.*?)\]\)", app, re.S)
    return dict(re.findall(r"name:\s*'([^']*)'\s*\n\s*value:\s*([^\n]*)", m.group(1))) if m else {}


production, staging = slot_settings("productionSettings"), slot_settings("stagingSettings")
check(production.get("TIMERS_ENABLED") == "'true'", "functionapp.bicep: production must have TIMERS_ENABLED 'true'")
check(staging.get("TIMERS_ENABLED") == "'false'", "functionapp.bicep: staging must have TIMERS_ENABLED 'false'")

# 2. WEBSITE_CONTENTSHARE: not sticky (above), and taken from parameters that infra/deploy.sh
#    fills with the current values, so a redeployment never rolls a swapped production back.
check(production.get("WEBSITE_CONTENTSHARE") == "productionContentShare"
      and staging.get("WEBSITE_CONTENTSHARE") == "stagingContentShare",
      "functionapp.bicep: WEBSITE_CONTENTSHARE must come from productionContentShare / stagingContentShare")
for param in ("productionContentShare", "stagingContentShare"):
    check(re.search(rf"^param {param} string", main, re.M), f"main.bicep: param {param} missing (infra/deploy.sh passes it)")
    check(f"{param}: {param}" in main, f"main.bicep: {param} not passed to the function app module")

# healthCheckPath, if ever set, must not be the dependency health (a Pexip outage would recycle
# every instance).
for rel, src in bicep.items():
    for path in re.findall(r"healthCheckPath:\s*'([^']*)'", src):
        check(path != "/api/health", f"{rel}: healthCheckPath must not be /api/health (it fails on shared dependencies)")

# 3-6. APIM.
apim = bicep["infra/modules/apim.bicep"]


def resource(src, symbol):
    m = re.search(rf"resource {symbol} '[^']+' = \{{(.*?)\n\}}", src, re.S)
    return m.group(1) if m else ""


private_api, public_api, health_api = (resource(apim, s) for s in ("api", "publicApi", "healthApi"))
check("subscriptionRequired: true" in private_api, "apim.bicep: the private API must have subscriptionRequired: true (with false APIM never resolves a key)")
check("translateRequiredQueryParameters: 'query'" in private_api, "apim.bicep: the private API needs translateRequiredQueryParameters: 'query' (uuiData, confirm)")
check("loadTextContent('../openapi-private.json')" in private_api, "apim.bicep: the private API must import openapi-private.json")
for name, body in (("publicApi", public_api), ("healthApi", health_api)):
    check("subscriptionRequired: false" in body, f"apim.bicep: {name} must stay keyless")
check(re.search(r"var isV2 = endsWith\(sku, 'V2'\)", apim) and "customProperties: isV2 ? {} :" in apim,
      "apim.bicep: the TLS/cipher customProperties must be applied on the classic tiers only")

policies = {p.name: p.read_text() for p in (infra / "policies").glob("*.xml")}


def parse_policy(raw):
    return ET.fromstring(re.sub(r'"@\(.*?\)"(?=[\s/>])', '"expr"', raw))


private_policy = parse_policy(policies["api.xml"])
inbound = private_policy.find("inbound")
jwt = private_policy.find(".//validate-jwt")
check(jwt is not None and jwt.get("failed-validation-httpcode") == "401", "api.xml: validate-jwt must answer 401")
check(jwt is not None and jwt.find("required-claims") is None, "api.xml: the role is checked after validate-jwt (403), not in required-claims (401)")
statuses = {int(s.get("code")) for s in private_policy.iter("set-status")} | {401}
check(403 in statuses, "api.xml: a token without the role must get 403")
# Issue 15: the management operations take the operator role, named in APIM and in the app.
check("{{maxconf-operator-role}}" in policies["api.xml"] and 'StartsWith("/manage/")' in policies["api.xml"],
      "api.xml: the /manage/ operations must require {{maxconf-operator-role}} instead of the caller's role")
check("name: 'maxconf-operator-role'" in apim, "apim.bicep: the maxconf-operator-role named value is missing")
check(re.search(r"name: 'AUTH_OPERATOR_ROLE'\s*\n\s*value: authOperatorRole", main),
      "main.bicep: the AUTH_OPERATOR_ROLE app setting must come from authOperatorRole")
stripped = {(e.tag, e.get("name")) for e in inbound if e.get("exists-action") == "delete"}
check(("set-query-parameter", "subscription-key") in stripped, "api.xml: the subscription-key query parameter must be stripped")
check(("set-header", "Ocp-Apim-Subscription-Key") in stripped, "api.xml: the Ocp-Apim-Subscription-Key header must be stripped")
for name in ("public.xml", "health.xml"):
    check(name in policies and parse_policy(policies[name]).find("inbound/rate-limit-by-key") is not None,
          f"{name}: the keyless API's policy must exist and rate-limit-by-key")

# openapi-private.json: every status the private policy returns is declared (401 without a key or
# token, 403 without the role); the public operations declare the gateway's 429.
private_doc = json.loads(text("infra/openapi-private.json"))
for path, ops in private_doc["paths"].items():
    for method, op in ops.items():
        if isinstance(op, dict) and "responses" in op:
            missing = sorted(str(s) for s in statuses if str(s) not in op["responses"])
            check(not missing, f"openapi-private.json: {method.upper()} {path} does not declare {missing}, which the APIM policy returns")
full_doc = yaml.safe_load(text("infra/openapi.yaml"))
for path in ("/public/room/{room_name}", "/public/event_sink", "/health"):
    check(all("429" in op.get("responses", {}) for m, op in full_doc["paths"][path].items() if isinstance(op, dict)),
          f"openapi.yaml: {path} must declare 429 (APIM rate-limit-by-key)")

# 8. host.json: what operators chart and alert on is never sampled away.
sampling = json.loads(text("host.json")).get("logging", {}).get("applicationInsights", {}).get("samplingSettings", {})
excluded = {t.strip() for t in str(sampling.get("excludedTypes", "")).split(";")}
check(sampling.get("isEnabled") is False or {"Request", "Trace", "Exception"} <= excluded,
      "host.json: sampling must exclude Request, Trace and Exception (metrics, timer summaries and create results are charted and alerted on)")

# Monitoring: every KQL file the Bicep loads exists, and every {placeholder} is filled in.
for rel in ("infra/modules/alerts.bicep", "infra/modules/workbook.bicep"):
    check(rel in bicep, f"{rel} missing")
    src = bicep.get(rel, "")
    for kql in re.findall(r"loadTextContent\('\.\./monitoring/([^']+)'\)", src):
        path = infra / "monitoring" / kql
        check(path.exists(), f"{rel}: {kql} missing")
        if path.exists():
            for placeholder in set(re.findall(r"\{([A-Za-z]+)\}", path.read_text())):
                check(re.search(rf"loadTextContent\('\.\./monitoring/{re.escape(kql)}'\)[^\n]*'\{{{placeholder}\}}'", src)
                      or re.search(rf"replace\([^\n]*{re.escape(kql)}[^\n]*'\{{{placeholder}\}}'", src),
                      f"{rel}: {{{placeholder}}} of {kql} is never replaced")
check("module alerts 'modules/alerts.bicep'" in main and "module workbook 'modules/workbook.bicep'" in main,
      "main.bicep: the alerts and workbook modules must be deployed")

# Issue 17: queue data access is granted to the app's identity alone, on an account that takes
# Entra ID only.
data_roles = {
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "19e7f393-937e-4f77-808e-94535e174ee6": "Storage Queue Data Reader",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
}
for rel, src in bicep.items():
    for guid_, role in data_roles.items():
        if guid_ in src:
            check(rel == "infra/modules/storage.bicep" and role == "Storage Queue Data Contributor",
                  f"{rel}: {role} granted; queue data access belongs to the app's identity in storage.bicep only")
storage = bicep["infra/modules/storage.bicep"]
for block in re.findall(r"resource \w+ 'Microsoft\.Authorization/roleAssignments@[^']+' = \{(.*?)\n\}", storage, re.S):
    check("principalId: appPrincipalId" in block, "storage.bicep: a role assignment goes to another principal than the app's identity")
main_account = resource(storage, "main")
check("allowSharedKeyAccess: false" in main_account, "storage.bicep: the queues' account must refuse shared keys (no key or SAS path to the pool)")

# The README deploys through infra/deploy.sh (the content shares), never the bare az command.
readme = text("README.md")
check("infra/deploy.sh rg-" in readme and "az deployment group create -g" not in readme,
      "README.md: deploy with infra/deploy.sh, not a bare az deployment group create (content shares)")

if problems:
    sys.exit("validate: deployment rules broken:\n  - " + "\n  - ".join(problems))
print("  ok: setting names, slot-sticky TIMERS_ENABLED, content shares, APIM APIs and policies, "
      "host.json sampling, alert/workbook KQL files, queue access to the app's identity only")
