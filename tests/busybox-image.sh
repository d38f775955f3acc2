#!/usr/bin/env bash
# Build the busybox test image as an LXD/Incus unified tarball (metadata.yaml,
# templates/, rootfs/) at the path given: no image server needed, only
# Debian's busybox-static (the container has no libc). Used by
# tests/lxd-up.sh and tests/incus-up.sh, which import it.
set -euo pipefail
out="${1:?usage: busybox-image.sh OUT.tar.gz}"
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 ||
    { echo "busybox-image.sh: /bin/busybox (Debian's busybox-static) is needed" >&2; exit 1; }

work=$(mktemp -d /tmp/busybox-image.XXXXXX)
# shellcheck disable=SC2064
trap "rm -rf '$work'" EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,root,home/tester,tmp,var/tmp,run}
cp /bin/busybox "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] && continue
    ln -s busybox "$root/bin/$a"
done
ln -s ../../bin/env "$root/usr/bin/env"
printf '#!/bin/sh\n# PID 1: do nothing, exit on the halt/stop signals LXD sends.\ntrap "exit 0" TERM INT HUP USR1 USR2 30\nwhile :; do /bin/sleep 2147483647 & wait $!; done\n' >"$root/sbin/init"
chmod 0755 "$root/sbin/init"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
chown 1000:1000 "$root/home/tester"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000:tester:/home/tester:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
tester:x:1000:
nogroup:x:65534:
EOF
echo busybox >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
mkdir -p "$work/templates"
printf '{{ container.name }}\n' >"$work/templates/hostname.tpl"
cat >"$work/metadata.yaml" <<EOF
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: busybox $(/bin/busybox 2>&1 | head -n1 | awk '{print $2}') test image for lxd-connector
  os: busybox
  release: "$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)"
  architecture: x86_64
templates:
  /etc/hostname:
    when:
    - create
    - copy
    template: hostname.tpl
EOF
tar -C "$work" --numeric-owner -czf "$out" metadata.yaml templates rootfs
