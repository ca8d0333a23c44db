#!/usr/bin/env bash
# Builds the deployable Functions app: a static Linux binary plus host.json and every
# function-*/ folder, in the layout `func azure functionapp publish` expects.
#
#   dist/app/         publish from here:  cd dist/app && func azure functionapp publish <app> --slot staging
#   dist/maxconf.zip  the same files zipped (run bit kept on `maxconf`), for
#                     `az functionapp deployment source config-zip --src dist/maxconf.zip`
#
# Environment: CARGO_TARGET_DIR (default ./target) is honoured; PACKAGE_SKIP_BUILD=1 reuses the
# binary already built for the target.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

target="x86_64-unknown-linux-musl"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
binary="$target_dir/$target/release/maxconf"
dist="$root/dist"
app="$dist/app"

if [[ "${PACKAGE_SKIP_BUILD:-0}" != "1" ]]; then
    if command -v rustup >/dev/null 2>&1 \
        && ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
    # ring compiles C for the target: it needs musl's gcc wrapper (Debian: musl-tools).
    if ! command -v musl-gcc >/dev/null 2>&1 && ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
        if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
            echo "package: installing musl-tools (musl-gcc)"
            apt-get install -y -qq musl-tools >/dev/null 2>&1 \
                || { apt-get update -qq >/dev/null && apt-get install -y -qq musl-tools >/dev/null; }
        else
            echo "package: musl-gcc not found; install musl-tools (Debian/Ubuntu) or a musl cross gcc" >&2
            exit 1
        fi
    fi
    # No simulator and no `maxconf dev` in what ships (the `sim` feature is for development).
    echo "package: cargo build --release --locked --no-default-features --target $target"
    cargo build --release --locked --no-default-features --target "$target"
fi
[[ -x "$binary" ]] || { echo "package: no binary at $binary" >&2; exit 1; }

# The app root holds only what the host needs. Everything .funcignore names (target/, src/,
# tests/, node_modules/, Cargo.*, package*.json, local.settings.json, *.md, …) is simply never
# copied; the check below proves it.
rm -rf "$app" "$dist/maxconf.zip"
mkdir -p "$app"
cp host.json "$app/"
shopt -s nullglob
functions=(function-*/)
shopt -u nullglob
(( ${#functions[@]} > 0 )) || { echo "package: no function-*/ folders" >&2; exit 1; }
for dir in "${functions[@]}"; do
    dir="${dir%/}"
    [[ -f "$dir/function.json" ]] || { echo "package: $dir has no function.json" >&2; exit 1; }
    mkdir -p "$app/$dir"
    cp "$dir/function.json" "$app/$dir/"
done
# The name must equal host.json's defaultExecutablePath exactly ("maxconf", not "./maxconf").
exe="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["customHandler"]["description"]["defaultExecutablePath"])' host.json)"
[[ "$exe" == "maxconf" ]] || { echo "package: host.json defaultExecutablePath is '$exe', expected 'maxconf'" >&2; exit 1; }
install -m 0755 "$binary" "$app/maxconf"
# Core Tools reads the worker runtime from local.settings.json when publishing (and never
# uploads this file). It names the runtime only: no setting, no secret.
printf '%s\n' '{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"custom"}}' >"$app/local.settings.json"

# .funcignore semantics: nothing it excludes may be in the package (bar the runtime-only
# local.settings.json above, which Core Tools leaves out of the upload by itself).
python3 - "$root/.funcignore" "$app" <<'PY'
import fnmatch, os, sys
patterns = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
app = sys.argv[2]
bad = []
for dirpath, dirnames, filenames in os.walk(app):
    for name in dirnames + filenames:
        rel = os.path.relpath(os.path.join(dirpath, name), app)
        if rel == "local.settings.json":
            continue
        for p in patterns:
            p_clean = p.rstrip("/").lstrip("/")
            if fnmatch.fnmatch(rel, p_clean) or fnmatch.fnmatch(name, p_clean) \
                    or rel.split(os.sep)[0] == p_clean:
                bad.append(f"{rel} (matches {p})")
if bad:
    sys.exit("package: .funcignore excludes files that are in the package:\n  " + "\n  ".join(bad))
PY

# The zip, without local.settings.json (as Core Tools uploads it), with Unix modes kept.
python3 - "$app" "$dist/maxconf.zip" <<'PY'
import os, stat, sys, zipfile
app, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, dirnames, filenames in os.walk(app):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, app).replace(os.sep, "/")
            if rel == "local.settings.json":
                continue
            info = zipfile.ZipInfo(rel)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = stat.S_IMODE(os.stat(path).st_mode)
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3  # Unix, so the mode bits are honoured
            with open(path, "rb") as f:
                z.writestr(info, f.read())
PY

echo "package: $app ($(find "$app" -type f | wc -l) files), $dist/maxconf.zip ($(du -h "$dist/maxconf.zip" | cut -f1))"
