#!/usr/bin/env bash
# Bring up a real local LXD for the lxd-connector test suite. Idempotent:
# a re-run when everything is up changes nothing and takes a few seconds.
#
# Needs root. No systemd, no network: the daemon is started by hand and the
# only image is a busybox one built locally from Debian's busybox-static.
#
# Environment (all optional):
#   LXD_TEST_PORT        HTTPS port on 127.0.0.1            (default 8443)
#   LXD_TEST_CONF        trusted client config folder       (default /var/lib/lxd-connector-test/conf)
#                        the untrusted one is "${LXD_TEST_CONF}-untrusted"
#   LXD_TEST_CONTAINERS  extra running containers, space separated (e.g. "h1 h2 h3")
#
# Result: remote "testlxd" (https://127.0.0.1:$LXD_TEST_PORT), image alias
# "busybox-test", containers c1 c2 (+extras) running and stopped1 stopped.
set -euo pipefail

PORT="${LXD_TEST_PORT:-8443}"
ADDR="127.0.0.1:${PORT}"
CONF="${LXD_TEST_CONF:-/var/lib/lxd-connector-test/conf}"
CONF="${CONF%/}"
UCONF="${CONF}-untrusted"
REMOTE=testlxd
TRUST_NAME=lxd-connector-test
ALIAS=busybox-test
LOGDIR=/var/log/lxd-connector-test
STATEDIR=/var/lib/lxd-connector-test
PIDFILE=/run/lxd-connector-test.pid
# p1..p8 are for the pyinfra tests (deploys, parallelism); c1 and c2 for the rest.
RUNNING=(c1 c2 p1 p2 p3 p4 p5 p6 p7 p8)
STOPPED=(stopped1)
read -r -a EXTRA <<<"${LXD_TEST_CONTAINERS:-}"

export HOME="${HOME:-/root}"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

log() { printf '[lxd-up] %s\n' "$*" >&2; }
die() { printf '[lxd-up] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "LXD_TEST_PORT must be a number, got '$PORT'"
for n in "${EXTRA[@]}"; do
    [[ "$n" =~ ^[a-zA-Z][a-zA-Z0-9-]{0,62}$ ]] || die "bad container name in LXD_TEST_CONTAINERS: '$n'"
    [ "$n" != stopped1 ] || die "stopped1 must stay stopped; do not list it in LXD_TEST_CONTAINERS"
done

# Server-side lxc: the daemon's unix socket, with root's default client config
# (never the caller's LXD_CONF, which may well point at the test config).
slxc() { env -u LXD_CONF lxc --force-local "$@"; }
# Client-side lxc over HTTPS with a given config folder.
clxc() { local d="$1"; shift; LXD_CONF="$d" lxc "$@"; }
# Run quietly; show the output only if the command fails.
quiet() {
    local out
    if ! out=$("$@" 2>&1); then printf '%s\n' "$out" >&2; return 1; fi
}

# ---------------------------------------------------------------- packages
need_pkgs=()
command -v lxd >/dev/null 2>&1 || need_pkgs+=(lxd)
command -v lxc >/dev/null 2>&1 || need_pkgs+=(lxd-client)
# the static busybox: the container has no libc (Debian's "busybox" package is dynamic)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v tar >/dev/null 2>&1 || need_pkgs+=(tar)
command -v gzip >/dev/null 2>&1 || need_pkgs+=(gzip)
command -v setsid >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing: ${need_pkgs[*]}"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
fi
mkdir -p "$LOGDIR" "$STATEDIR"

# ---------------------------------------------------------------- daemon
# PIDs of LXD daemon processes ("lxd" with no sub-command; not "lxd forkexec",
# "lxd waitready", ...).
daemon_pids() {
    ps -eo pid=,args= | awk '{
        b = $2; sub(/.*\//, "", b)
        if (b == "lxd" && (NF == 2 || $3 ~ /^-/)) print $1 }'
}

daemon_answers() {
    timeout 15 env -u LXD_CONF lxc --force-local query /1.0 >/dev/null 2>&1
}

if daemon_answers; then
    log "LXD daemon already running and answering"
elif [ -n "$(daemon_pids)" ] && timeout 15 lxd waitready --timeout=10 >/dev/null 2>&1 && daemon_answers; then
    log "LXD daemon was starting; now answering"
else
    pids=$(daemon_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        log "LXD daemon process(es) $pids do not answer: killing them"
        kill $pids 2>/dev/null || true
        kill -CONT $pids 2>/dev/null || true   # a stopped (SIGSTOP) daemon only sees TERM once resumed
        for _ in $(seq 1 20); do
            alive=""
            for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
            [ -z "$alive" ] && break
            sleep 0.5
        done
        [ -n "$alive" ] && { log "SIGKILL$alive"; kill -9 $alive 2>/dev/null || true; sleep 1; }
    fi
    log "starting LXD daemon (log: $LOGDIR/lxd.log)"
    ulimit -n 65536 2>/dev/null || true
    setsid nohup lxd --group root --logfile "$LOGDIR/lxd.log" \
        </dev/null >>"$LOGDIR/lxd.out" 2>&1 &
    echo $! >"$PIDFILE"
    disown || true
    if ! lxd waitready --timeout=60; then
        tail -n 30 "$LOGDIR/lxd.log" "$LOGDIR/lxd.out" >&2 || true
        die "LXD daemon did not become ready"
    fi
    daemon_answers || die "LXD daemon is up but does not answer (see $LOGDIR/lxd.log)"
fi

# A first plain "lxc" run creates ~/.config/lxc and prints a "To start your
# first container" hint on stderr; get that over with here.
if [ -z "${LXD_CONF:-}" ] && [ ! -d "$HOME/.config/lxc" ]; then
    lxc remote list >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- init
if ! slxc storage show default >/dev/null 2>&1; then
    log "lxd init --preseed (dir pool 'default', https on $ADDR)"
    lxd init --preseed <<EOF
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
EOF
fi
# Reconcile in case the state came from elsewhere.
if [ "$(slxc config get core.https_address)" != "$ADDR" ]; then
    log "setting core.https_address=$ADDR"
    slxc config set core.https_address "$ADDR"
fi
if ! slxc profile device get default root pool >/dev/null 2>&1; then
    log "adding root disk to default profile"
    slxc profile device add default root disk path=/ pool=default
fi

# ---------------------------------------------------------------- image
build_image() {
    local tarball
    tarball=$(mktemp /tmp/lxd-up-image.XXXXXX.tar.gz)
    local tests_dir
    tests_dir=$(dirname "${BASH_SOURCE[0]}")
    bash "$tests_dir/busybox-image.sh" "$tarball"
    quiet slxc image import "$tarball" --alias "$ALIAS"
    rm -f "$tarball"
}

if slxc image alias list --format csv | cut -d, -f1 | grep -qx "$ALIAS"; then
    log "image alias $ALIAS present"
else
    log "building and importing image $ALIAS"
    build_image
fi

# ---------------------------------------------------------------- containers
declare -A STATE=()
while IFS=, read -r name status; do
    [ -n "$name" ] && STATE["$name"]="$status"
done < <(slxc list --format csv -c ns)

ensure_running() {
    local n="$1"
    case "${STATE[$n]:-}" in
        RUNNING) ;;
        "") log "launching $n"; quiet slxc launch "$ALIAS" "$n" ;;
        *) log "starting $n (was ${STATE[$n]})"; quiet slxc start "$n" ;;
    esac
}
ensure_stopped() {
    local n="$1"
    case "${STATE[$n]:-}" in
        STOPPED) ;;
        "") log "creating $n (stopped)"; quiet slxc init "$ALIAS" "$n" ;;
        *) log "stopping $n (was ${STATE[$n]})"; quiet slxc stop --force "$n" ;;
    esac
}
for n in "${RUNNING[@]}" "${EXTRA[@]}"; do ensure_running "$n"; done
for n in "${STOPPED[@]}"; do ensure_stopped "$n"; done

# ---------------------------------------------------------------- second project
# A project that shares default's images and profiles and holds a running
# c1 of its own: tests tell the projects apart by the instance of the same
# name.
PROJECT2=connector-p2
if ! slxc project show "$PROJECT2" >/dev/null 2>&1; then
    log "creating project $PROJECT2"
    quiet slxc project create "$PROJECT2" -c features.images=false -c features.profiles=false
fi
case "$(slxc list --project "$PROJECT2" --format csv -c ns | awk -F, '$1 == "c1" {print $2}')" in
    RUNNING) ;;
    "") log "launching c1 in project $PROJECT2"; quiet slxc launch "$ALIAS" c1 --project "$PROJECT2" ;;
    *) log "starting c1 in project $PROJECT2"; quiet slxc start c1 --project "$PROJECT2" ;;
esac

# ---------------------------------------------------------------- trusted client
remote_auth() { # dir -> prints trusted / untrusted / nothing
    timeout 20 env LXD_CONF="$1" lxc info "$REMOTE:" 2>/dev/null |
        awk '$1 == "auth:" {print $2; exit}' || true
}

if [ "$(remote_auth "$CONF")" = trusted ]; then
    log "client config $CONF is trusted"
else
    log "setting up trusted client config in $CONF"
    # Forget the certificate this folder held before (if any), so that
    # re-running does not pile up trusted certificates. Entries of other
    # config folders (another LXD_TEST_CONF) are left alone.
    if [ -f "$CONF/client.crt" ]; then
        fp=$(openssl x509 -in "$CONF/client.crt" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1) || fp=""
        if [ -n "$fp" ] && slxc config trust list --format csv | cut -d, -f4 | grep -qx "${fp:0:12}"; then
            quiet slxc config trust remove "$fp" || true
        fi
    fi
    if slxc config trust list-tokens --format csv | cut -d, -f1 | grep -qx "$TRUST_NAME"; then
        quiet slxc config trust revoke-token "$TRUST_NAME" || true
    fi
    rm -rf "$CONF"
    mkdir -p "$CONF"
    chmod 0700 "$CONF"
    token=$(slxc config trust add --name "$TRUST_NAME" | grep -v ':' | tail -n1 | tr -d '[:space:]')
    [ -n "$token" ] || die "could not get a trust token"
    quiet clxc "$CONF" remote add "$REMOTE" "$token"
    quiet clxc "$CONF" remote switch "$REMOTE"
    [ "$(remote_auth "$CONF")" = trusted ] || die "client in $CONF is still not trusted"
    rm -rf "$UCONF"   # its server certificate copy may be stale
fi

# ---------------------------------------------------------------- untrusted client
if [ "$(remote_auth "$UCONF")" = untrusted ] &&
    cmp -s "$CONF/servercerts/$REMOTE.crt" "$UCONF/servercerts/$REMOTE.crt"; then
    log "client config $UCONF is untrusted (as wanted)"
else
    log "setting up untrusted client config in $UCONF"
    rm -rf "$UCONF"
    mkdir -p "$UCONF/servercerts"
    chmod 0700 "$UCONF"
    cp "$CONF/config.yml" "$UCONF/config.yml"
    cp "$CONF/servercerts/$REMOTE.crt" "$UCONF/servercerts/$REMOTE.crt"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes \
        -keyout "$UCONF/client.key.tmp" -out "$UCONF/client.crt" -days 3650 \
        -subj /CN=untrusted 2>/dev/null
    if grep -q 'BEGIN EC PRIVATE KEY' "$CONF/client.key"; then
        openssl ec -in "$UCONF/client.key.tmp" -out "$UCONF/client.key" 2>/dev/null   # SEC1, like lxc
    else
        cp "$UCONF/client.key.tmp" "$UCONF/client.key"                               # PKCS#8
    fi
    rm -f "$UCONF/client.key.tmp"
    chmod 0600 "$UCONF/client.key"
    [ "$(remote_auth "$UCONF")" = untrusted ] || die "client in $UCONF is not seen as untrusted"
fi

# ---------------------------------------------------------------- summary
cat <<EOF
LXD_TEST_CONF=$CONF
LXD_TEST_CONF_UNTRUSTED=$UCONF
LXD_TEST_REMOTE=$REMOTE
LXD_TEST_URL=https://$ADDR
LXD_TEST_IMAGE=$ALIAS
LXD_TEST_RUNNING="${RUNNING[*]}${EXTRA[*]:+ ${EXTRA[*]}}"
LXD_TEST_STOPPED="${STOPPED[*]}"
LXD_TEST_PROJECT=$PROJECT2   # holds a running c1 of its own
# client cert/key: $CONF/client.crt $CONF/client.key ; server cert: $CONF/servercerts/$REMOTE.crt
EOF
