#!/usr/bin/env bash
# Bring up the local test LXD, build lxd-connector, and drive a container
# through the sandboxed component: info, exec (with stdin), put, get.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(tests/lxd-up.sh)"
cargo build --release
bin="${CARGO_TARGET_DIR:-target}/release/lxd-connector"
export LXD_CONF="$LXD_TEST_CONF"
remote="$LXD_TEST_REMOTE"

step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$bin" info "$remote:c1"
step "$bin" exec "$remote:c1" -- 'uname -a; echo "running as $(id -u) in $(pwd)"'
printf '\n$ echo "hello through stdin" | %s exec %s:c1 -- "tr a-z A-Z"\n' "$bin" "$remote"
echo "hello through stdin" | "$bin" exec "$remote:c1" -- "tr a-z A-Z"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 1048576 /dev/urandom > "$tmp/payload.bin"
step "$bin" put --mode 0640 "$tmp/payload.bin" "$remote:c1/tmp/payload.bin"
step "$bin" exec "$remote:c1" -- 'ls -l /tmp/payload.bin'
step "$bin" get "$remote:c1/tmp/payload.bin" "$tmp/back.bin"
if cmp -s "$tmp/payload.bin" "$tmp/back.bin"; then
    echo "round trip: 1 MiB identical"
else
    echo "round trip: MISMATCH" >&2
    exit 1
fi
"$bin" exec "$remote:c1" -- 'rm /tmp/payload.bin'

printf '\n$ %s exec %s:c1 -- "exit 3"; echo "exit code: $?"\n' "$bin" "$remote"
set +e
"$bin" exec "$remote:c1" -- "exit 3"
echo "exit code: $?"
printf '\n$ %s exec %s:nosuch -- true   # a connector failure: one line, exit 255\n' "$bin" "$remote"
"$bin" exec "$remote:nosuch" -- true
echo "exit code: $?"
