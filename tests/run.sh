#!/usr/bin/env bash
# The whole test suite against a real LXD (and a real Incus beside it):
# Rust unit and end-to-end tests, then the Python bridge and the pyinfra
# connector tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

tests/lxd-up.sh >/dev/null
tests/incus-up.sh >/dev/null
cargo test --release

# A Python that takes pip installs: python3 itself, unless it is an
# externally managed system Python (PEP 668); then a venv of its own.
py=python3
if ! "$py" -m pip --version >/dev/null 2>&1 ||
    "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")))'; then
    venv="${LXD_CONNECTOR_VENV:-/var/cache/lxd-connector/venv}"
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv" 2>/dev/null || {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv "$venv"
        }
    fi
    py="$venv/bin/python"
fi
echo "python for the pyinfra tests: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
# Builds the bridge with the same target folder and profile as above, so
# wasmtime is not compiled a second time.
"$py" -m pip install -q -r tests/python/requirements.txt ./python
"$py" -m pytest -q tests/python
