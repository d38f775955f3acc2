#!/usr/bin/env bash
# Bring up a real local Incus beside the test LXD (tests/lxd-up.sh): Incus 6
# from Debian's bookworm-backports, its own daemon, socket
# (/var/lib/incus/unix.socket) and HTTPS port. Idempotent: a re-run when all
# is up changes nothing and takes about a second.
#
# Needs root. No systemd, no network beyond Debian's archive: the daemon is
# started by hand and the image is the same busybox one as LXD's
# (tests/busybox-image.sh).
#
# Environment (all optional):
#   INCUS_TEST_PORT   HTTPS port on 127.0.0.1                 (default 8444)
#   INCUS_TEST_CONF   trusted incus client config folder      (default /var/lib/lxd-connector-test/incus-conf)
#
# Result: remote "testincus" (https://127.0.0.1:$INCUS_TEST_PORT, protocol
# incus) in an incus client config folder, containers c1 (running) and
# stopped1 (stopped), image alias "busybox-test".
set -euo pipefail

PORT="${INCUS_TEST_PORT:-8444}"
ADDR="127.0.0.1:${PORT}"
CONF="${INCUS_TEST_CONF:-/var/lib/lxd-connector-test/incus-conf}"
CONF="${CONF%/}"
REMOTE=testincus
TRUST_NAME=lxd-connector-test
ALIAS=busybox-test
LOGDIR=/var/log/lxd-connector-test
INCUSD=/usr/libexec/incus/incusd
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export HOME="${HOME:-/root}"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

log() { printf '[incus-up] %s\n' "$*" >&2; }
die() { printf '[incus-up] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "INCUS_TEST_PORT must be a number, got '$PORT'"

# Server-side incus: the daemon's unix socket, with root's own client config
# (never the caller's INCUS_CONF, which may well point at the test config).
sincus() { env -u INCUS_CONF -u INCUS_REMOTE incus --force-local "$@"; }
quiet() {
    local out
    if ! out=$("$@" 2>&1); then printf '%s\n' "$out" >&2; return 1; fi
}

# ---------------------------------------------------------------- packages
# Incus 6 is in bookworm-backports (Debian 13 has it in main). Only the
# container daemon and the client: "incus" itself would pull in QEMU.
if [ ! -x "$INCUSD" ] || ! command -v incus >/dev/null 2>&1; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    target=()
    if [ "$codename" = bookworm ]; then
        if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "adding Debian's bookworm-backports to apt's sources"
            cat >/etc/apt/sources.list.d/lxd-connector-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        fi
        target=(-t bookworm-backports)
    fi
    log "installing incus-base and incus-client ${target[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" \
        incus-base incus-client busybox-static >&2
fi
[ -x "$INCUSD" ] || die "$INCUSD is missing after installing incus-base"
mkdir -p "$LOGDIR"

# ---------------------------------------------------------------- daemon
daemon_answers() { timeout 15 env -u INCUS_CONF incus --force-local query /1.0 >/dev/null 2>&1; }
daemon_pids() {
    ps -eo pid=,args= | awk -v d="$INCUSD" '$2 == d && (NF == 2 || $3 ~ /^-/) {print $1}'
}

if daemon_answers; then
    log "Incus daemon already running and answering"
else
    pids=$(daemon_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        log "Incus daemon process(es) $pids do not answer: killing them"
        kill $pids 2>/dev/null || true
        kill -CONT $pids 2>/dev/null || true
        sleep 2
        kill -9 $pids 2>/dev/null || true
    fi
    log "starting the Incus daemon (log: $LOGDIR/incus.log)"
    ulimit -n 65536 2>/dev/null || true
    setsid nohup "$INCUSD" --group root --logfile "$LOGDIR/incus.log" \
        </dev/null >>"$LOGDIR/incus.out" 2>&1 &
    disown || true
    if ! timeout 70 "$INCUSD" waitready --timeout=60; then
        tail -n 30 "$LOGDIR/incus.log" "$LOGDIR/incus.out" >&2 || true
        die "Incus daemon did not become ready"
    fi
    daemon_answers || die "Incus daemon is up but does not answer (see $LOGDIR/incus.log)"
fi

# ---------------------------------------------------------------- init
if ! sincus storage show default >/dev/null 2>&1; then
    log "incus admin init --preseed (dir pool 'default', https on $ADDR)"
    sincus admin init --preseed <<PRESEED
config:
  core.https_address: "${ADDR}"
  images.auto_update_interval: "0"
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
PRESEED
fi
if [ "$(sincus config get core.https_address)" != "$ADDR" ]; then
    log "setting core.https_address=$ADDR"
    sincus config set core.https_address "$ADDR"
fi

# ---------------------------------------------------------------- image
if ! sincus image alias list --format csv | cut -d, -f1 | grep -qx "$ALIAS"; then
    log "building and importing image $ALIAS"
    tarball=$(mktemp /tmp/incus-up-image.XXXXXX.tar.gz)
    bash "$TESTS_DIR/busybox-image.sh" "$tarball"
    quiet sincus image import "$tarball" --alias "$ALIAS"
    rm -f "$tarball"
fi

# ---------------------------------------------------------------- containers
declare -A STATE=()
while IFS=, read -r name status; do
    [ -n "$name" ] && STATE["$name"]="$status"
done < <(sincus list --format csv -c ns)
case "${STATE[c1]:-}" in
    RUNNING) ;;
    "") log "launching c1"; quiet sincus launch "$ALIAS" c1 ;;
    *) log "starting c1"; quiet sincus start c1 ;;
esac
case "${STATE[stopped1]:-}" in
    STOPPED) ;;
    "") log "creating stopped1 (stopped)"; quiet sincus init "$ALIAS" stopped1 ;;
    *) log "stopping stopped1"; quiet sincus stop --force stopped1 ;;
esac
# Tells this c1 from LXD's c1 (same name on both servers).
quiet sincus exec c1 -- sh -c 'echo incus > /etc/test-server'

# ---------------------------------------------------------------- trusted client
remote_auth() {
    timeout 20 env INCUS_CONF="$1" incus info "$REMOTE:" 2>/dev/null |
        awk '$1 == "auth:" {print $2; exit}' || true
}
if [ "$(remote_auth "$CONF")" = trusted ]; then
    log "incus client config $CONF is trusted"
else
    log "setting up a trusted incus client config in $CONF"
    if [ -f "$CONF/client.crt" ]; then
        fp=$(openssl x509 -in "$CONF/client.crt" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1) || fp=""
        [ -n "$fp" ] && quiet sincus config trust remove "$fp" 2>/dev/null || true
    fi
    if sincus config trust list-tokens --format csv | cut -d, -f1 | grep -qx "$TRUST_NAME"; then
        quiet sincus config trust revoke-token "$TRUST_NAME" || true
    fi
    rm -rf "$CONF"
    mkdir -p "$CONF"
    chmod 0700 "$CONF"
    token=$(sincus config trust add "$TRUST_NAME" | grep -v ':' | tail -n1 | tr -d '[:space:]')
    [ -n "$token" ] || die "could not get a trust token"
    quiet env INCUS_CONF="$CONF" incus remote add "$REMOTE" "$token"
    quiet env INCUS_CONF="$CONF" incus remote switch "$REMOTE"
    [ "$(remote_auth "$CONF")" = trusted ] || die "incus client in $CONF is still not trusted"
fi

cat <<SUMMARY
INCUS_TEST_CONF=$CONF
INCUS_TEST_REMOTE=$REMOTE
INCUS_TEST_URL=https://$ADDR
INCUS_TEST_RUNNING="c1"
INCUS_TEST_STOPPED="stopped1"
SUMMARY
