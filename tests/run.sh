#!/usr/bin/env bash
# The whole test suite against a real LXD: Rust unit and end-to-end tests,
# then the Python bridge and the pyinfra connector tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

tests/lxd-up.sh >/dev/null
cargo test --release
# Builds the bridge with the same target folder and profile as above, so
# wasmtime is not compiled a second time.
python3 -m pip install -q pytest ./python
python3 -m pytest -q tests/python
