"""Writes infra/openapi-private.json: infra/openapi.yaml without the public operations.

API Management publishes maxconf as three APIs: the private one (subscription key + Entra ID
token), imported from this file, and the public ones (Genesys lookup, Pexip event sink, health),
declared operation by operation in infra/modules/apim.bicep, keyless and rate-limited. APIM can
only require a subscription key per API, so the public operations must not be in the private
import. infra/validate.sh regenerates the file and fails if it differs from what is committed:
    python3 infra/openapi_private.py            # rewrite
    python3 infra/openapi_private.py --check    # compare only
"""

import json
import sys
from pathlib import Path

import yaml

PUBLIC_PATHS = ("/public/room/{room_name}", "/public/event_sink", "/health")

here = Path(__file__).resolve().parent
source = yaml.safe_load((here / "openapi.yaml").read_text())
missing = [p for p in PUBLIC_PATHS if p not in source["paths"]]
if missing:
    sys.exit(f"openapi_private: public paths not in openapi.yaml: {missing}")
private = dict(source)
private["paths"] = {p: ops for p, ops in source["paths"].items() if p not in PUBLIC_PATHS}
text = json.dumps(private, indent=2, sort_keys=False) + "\n"
target = here / "openapi-private.json"
if "--check" in sys.argv:
    if not target.exists() or target.read_text() != text:
        sys.exit("validate: infra/openapi-private.json is stale: run python3 infra/openapi_private.py")
    print(f"  ok: openapi-private.json = openapi.yaml minus {len(PUBLIC_PATHS)} public paths")
else:
    target.write_text(text)
    print(f"wrote {target}")
