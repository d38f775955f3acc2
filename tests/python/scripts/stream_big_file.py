"""Puts then gets one big file through @lxd_wasm in a fresh process and
reports, as JSON on stdout, the process's peak RSS (VmHWM) before and after
each transfer. Run by test_files.py; gevent is monkey-patched as under the
pyinfra CLI.

usage: stream_big_file.py INSTANCE LOCAL_SRC REMOTE_PATH LOCAL_DEST
"""

from gevent import monkey

monkey.patch_all()

import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.connect import connect_all, disconnect_all  # noqa: E402


def peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    instance, src, remote, dest = sys.argv[1:5]
    name = f"@lxd_wasm/{instance}"
    state = State(Inventory(([name], {})), Config())
    connect_all(state)
    host = state.inventory.get_host(name)
    # Warm up every code path once with a small file, so what is measured
    # below is what a big file adds.
    host.put_file(io.BytesIO(b"warm-up" * 1000), remote)
    host.get_file(remote, io.BytesIO())

    report = {"before_put_kib": peak_rss_kib()}
    started = time.monotonic()
    assert host.put_file(src, remote) is True
    report["put_seconds"] = time.monotonic() - started
    report["after_put_kib"] = peak_rss_kib()
    started = time.monotonic()
    assert host.get_file(remote, dest) is True
    report["get_seconds"] = time.monotonic() - started
    report["after_get_kib"] = peak_rss_kib()
    disconnect_all(state)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
