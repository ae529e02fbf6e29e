#!/usr/bin/env bash
# Installs everything imgsim needs, from the package registries only, and
# builds and installs the extension into Debian's PostgreSQL 15. Idempotent:
# each step checks before it acts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

begin "apt packages"
APT_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "ok: ${APT_PACKAGES[*]}"

begin "cargo-pgrx $PGRX_VERSION"
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
# Point pgrx at Debian's PostgreSQL; it must never download one.
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi
cargo pgrx --version

begin "python environment (model conversion, ONNX Runtime, test photos)"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! cmp -s "$REPO_ROOT/models/requirements.txt" "$VENV/.requirements.txt"; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/models/requirements.txt"
    cp "$REPO_ROOT/models/requirements.txt" "$VENV/.requirements.txt"
fi
echo "ok: $VENV"
