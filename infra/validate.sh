#!/usr/bin/env bash
# Validates infra/ without Azure and without the Bicep compiler (neither is reachable here):
#   1. syntax gate: every .bicep parses with pycep-parser (the parser checkov itself uses);
#   2. checkov scans every .bicep; any failed check fails the build (skips are written next to
#      the resource as `//checkov:skip=CKV_…: reason`), and every file must have been parsed
#      (checkov exits 0 on a file it cannot parse);
#   3. infra/openapi.yaml is a valid OpenAPI 3.0 document (openapi-spec-validator);
#   4. infra/main.parameters.json is JSON and names only parameters main.bicep declares;
#   5. infra/policies/*.xml are well-formed XML (APIM rawxml: @(...) expressions aside);
#   6. the shell scripts of infra/, the package scripts and scripts/smoke.sh pass shellcheck
#      (required when CI=true);
#   7. the deployment rules of infra/validate_rules.py (setting names, slot-sticky TIMERS_ENABLED,
#      content shares, the three APIM APIs and their policies, host.json sampling, the alert and
#      workbook KQL files, queue access for the app's identity only) and
#      infra/openapi-private.json = infra/openapi.yaml without the public paths;
#   8. infra/deploy.sh, against a stand-in `az` reporting swapped slots, passes the content share
#      each slot runs from now (not the template's defaults).
# The smoke script itself runs against `maxconf dev` in `cargo test --test deployment`.
#
# Tools: requirements-infra.txt. Uses .venv-infra/ at the repository root if it exists, else
# whatever python3 / checkov are on PATH:
#   python3 -m venv .venv-infra && .venv-infra/bin/pip install -r requirements-infra.txt
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
infra="$root/infra"
cd "$root"

if [[ -x "$root/.venv-infra/bin/python" ]]; then
    py="$root/.venv-infra/bin/python"
    checkov="$root/.venv-infra/bin/checkov"
else
    py="python3"
    checkov="checkov"
fi

mapfile -t bicep_files < <(cd "$infra" && find . -name '*.bicep' -type f | sed 's|^\./||' | sort)
(( ${#bicep_files[@]} > 0 )) || { echo "validate: no .bicep files under infra/" >&2; exit 1; }

echo "== 1/8 pycep-parser: ${#bicep_files[@]} Bicep files"
"$py" - "$infra" "${bicep_files[@]}" <<'PY'
import sys
from pathlib import Path
from pycep import BicepParser

infra = Path(sys.argv[1])
parser = BicepParser()
failed = 0
for rel in sys.argv[2:]:
    try:
        doc = parser.parse(file_path=infra / rel)
    except Exception as e:  # lark's errors carry line and column
        failed += 1
        print(f"  FAIL {rel}: {type(e).__name__}: {str(e).strip()[:600]}")
        continue
    counts = ", ".join(f"{len(doc.get(k) or {})} {k}" for k in ("parameters", "variables", "resources", "modules", "outputs"))
    print(f"  ok   {rel}: {counts}")
if failed:
    sys.exit(f"validate: {failed} Bicep file(s) do not parse")
PY

echo "== 2/8 checkov (bicep)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# The findings, compact, on the console (any finding fails the build below).
set +e
"$checkov" -d "$infra" --framework bicep --skip-download --compact --quiet
checkov_rc=$?
set -e
# The full results (passed and skipped checks, parsing errors) for the coverage check:
# checkov exits 0 on a file it cannot parse, so make sure it parsed every one.
"$checkov" -d "$infra" --framework bicep --skip-download -o json >"$out/results.json" 2>"$out/stderr" || true
"$py" - "$out/results.json" "$infra" "$checkov_rc" "${bicep_files[@]}" <<'PY'
import json, sys
from pathlib import Path
from checkov.bicep.parser import Parser

report_path, infra, rc, files = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
try:
    data = json.loads(Path(report_path).read_text())
except (FileNotFoundError, json.JSONDecodeError) as e:
    sys.exit(f"validate: checkov wrote no JSON report ({e})")
reports = data if isinstance(data, list) else [data]
reports = [r for r in reports if r.get("check_type") == "bicep"]
if not reports:
    sys.exit("validate: checkov produced no bicep report: it parsed no file")
summary, results = reports[0]["summary"], reports[0]["results"]
scanned = {c["file_path"].lstrip("/") for kind in ("passed_checks", "failed_checks", "skipped_checks")
           for c in results.get(kind, [])}
# The parser checkov runs, over the same files: whatever it rejects, checkov skipped silently.
definitions, _, parse_failures = Parser().get_files_definitions([infra / f for f in files])
print(f"  checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped "
      f"(each with its reason in the Bicep), {summary.get('parsing_errors', 0)} parsing errors; "
      f"{len(definitions)}/{len(files)} files parsed by checkov's parser, {len(scanned)} with applicable checks")
problems = []
if summary.get("parsing_errors", 0):
    problems.append(f"checkov could not parse {summary['parsing_errors']} file(s)")
if parse_failures or len(definitions) != len(files):
    problems.append("checkov's parser rejects: " + ", ".join(parse_failures))
if not scanned:
    problems.append("checkov ran no check at all")
if summary["failed"]:
    failed = results.get("failed_checks", [])
    problems.append(f"{summary['failed']} failed check(s): " + ", ".join(
        sorted({f"{c['check_id']} ({c['file_path'].lstrip('/')}:{c['resource']})" for c in failed})))
if rc != 0 and not summary["failed"]:
    problems.append(f"checkov exited {rc}")
if problems:
    sys.exit("validate: " + "; ".join(problems))
PY

echo "== 3/8 openapi-spec-validator: infra/openapi.yaml, infra/openapi-private.json"
"$py" - "$infra/openapi.yaml" "$infra/openapi-private.json" <<'PY'
import sys
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

for path in sys.argv[1:]:
    name = path.split("/infra/")[-1]
    spec, _ = read_from_filename(path)
    if not str(spec.get("openapi", "")).startswith("3.0"):
        sys.exit(f"validate: {name} must be OpenAPI 3.0.x (APIM imports 3.0)")
    try:
        validate(spec)
    except Exception as e:  # the validator's message names the failing path; the schema dump is noise
        message = str(e).split("\n\nFailed validating")[0]
        sys.exit(f"validate: {name} is not valid OpenAPI: {message[:800]}")
    ops = sum(1 for p in spec["paths"].values() for m in p if m in {"get", "put", "post", "patch", "delete"})
    print(f"  ok: {name}: OpenAPI {spec['openapi']}, {len(spec['paths'])} paths, {ops} operations")
PY

echo "== 4/8 main.parameters.json"
"$py" - "$infra/main.parameters.json" "$infra/main.bicep" <<'PY'
import json, sys
from pathlib import Path
from pycep import BicepParser

params = json.loads(Path(sys.argv[1]).read_text())["parameters"]
declared = BicepParser().parse(file_path=Path(sys.argv[2]))["parameters"]
unknown = sorted(set(params) - set(declared))
if unknown:
    sys.exit(f"validate: main.parameters.json sets undeclared parameters: {unknown}")
required = sorted(n for n, p in declared.items() if "default" not in p and n not in params
                  and not (p.get("decorators") and any("secure" in str(d) for d in p["decorators"])))
print(f"  ok: {len(params)} parameters; left to the command line: {required or 'none'}")
PY

echo "== 5/8 APIM policies"
"$py" - "$infra"/policies/*.xml <<'PY'
import re, sys
import xml.etree.ElementTree as ET
for path in sys.argv[1:]:
    text = open(path).read()
    # rawxml allows policy expressions with bare quotes in attributes; blank them for the check.
    text = re.sub(r'"@\(.*?\)"(?=[\s/>])', '"expr"', text)
    ET.fromstring(text)
    print(f"  ok: {path.split('/infra/')[-1]}")
PY

echo "== 6/8 shellcheck: infra/ scripts, scripts/package.sh, scripts/test-package.sh, scripts/smoke.sh"
# infra/'s scripts, the package scripts and the smoke test (other scripts/ files are checked by
# their owners).
mapfile -t scripts < <(find "$infra" -name '*.sh' -type f | sort; ls "$root/scripts/package.sh" "$root/scripts/test-package.sh" "$root/scripts/smoke.sh")
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck "${scripts[@]}"
    echo "  ok: ${#scripts[@]} scripts"
elif [[ "${CI:-}" == "true" ]]; then
    echo "validate: shellcheck is not installed (apt-get install -y shellcheck)" >&2
    exit 1
else
    echo "  skipped: shellcheck is not installed (CI requires it)"
fi

echo "== 7/8 deployment rules"
"$py" "$infra/validate_rules.py"
"$py" "$infra/openapi_private.py" --check

echo "== 8/8 infra/deploy.sh keeps each slot's content share"
fake="$out/fake-az"
mkdir -p "$fake"
# Production runs from content-staging after one swap; a redeployment must keep it there.
cat >"$fake/az" <<'AZ'
#!/usr/bin/env bash
case "$*" in
  "functionapp list"*) echo "func-maxconf-test" ;;
  *"appsettings list"*"--slot staging"*) echo "content-production" ;;
  *"appsettings list"*) echo "content-staging" ;;
  *) echo "unexpected az call: $*" >&2; exit 1 ;;
esac
AZ
chmod +x "$fake/az"
deployed="$(PATH="$fake:$PATH" MAXCONF_DEPLOY_DRY_RUN=1 bash "$infra/deploy.sh" rg-test)"
grep -q -- "productionContentShare=content-staging stagingContentShare=content-production" <<<"$deployed" \
    || { echo "validate: infra/deploy.sh did not pass the current content shares: $deployed" >&2; exit 1; }
echo "  ok: swapped slots keep their shares on redeployment"

echo "validate: infra OK"
