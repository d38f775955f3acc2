"""The pyinfra connectors' side of the benchmark: times the API cases through
pyinfra's own API (in-process, gevent monkey-patched as the pyinfra CLI is)
and prints one JSON object per case on stdout, in the format of
``host/examples/bench_api.rs``.

    HOME=... LXD_CONF=... python3 bench/py_api.py --connector lxd_wasm|lxd_api \\
        --remote wan --instances bench1,...,bench16 [--control 127.0.0.1:PORT] \\
        [--reps 20] [--big-reps 3] [--big-file PATH] --cases a,b,...

``connect_first`` takes one sample (the first connection of this process):
run the script once per sample. Run by ``bench/run.py``.
"""

from gevent import monkey  # noqa: I001 - first, as pyinfra's CLI does

monkey.patch_all()

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.command import StringCommand  # noqa: E402

ONE_MIB_CMD = "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1048576"


class Proxy:
    def __init__(self, control: str | None):
        self.control = control

    def stats(self) -> tuple[int, int]:
        if not self.control:
            return 0, 0
        host, port = self.control.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"stats\n")
            line = s.makefile().readline()
        d = json.loads(line)
        return d["connections"], d["round_trips"]


def rss_kb() -> tuple[int, int]:
    now = peak = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return now, peak


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Sink:
    """A binary file object that counts what is written to it."""

    def __init__(self):
        self.n = 0

    def read(self, n=-1):  # pyinfra's get_file_io wants a readable object
        return b""

    def seek(self, *a):
        return 0

    def write(self, data):
        self.n += len(data)
        return len(data)

    def flush(self):
        pass


class Bench:
    def __init__(self, args):
        self.connector = args.connector
        self.remote = args.remote
        self.instances = args.instances.split(",")
        self.proxy = Proxy(args.control)

    def state(self, names):
        hosts = [f"@{self.connector}/{self.remote}:{n}" for n in names]
        state = State(Inventory((hosts, {})), Config())
        return state, [state.inventory.get_host(h) for h in hosts]

    def mark(self):
        return time.perf_counter(), self.proxy.stats()

    def sample(self, m, nbytes=0):
        secs = time.perf_counter() - m[0]
        conns, rts = self.proxy.stats()
        return {"s": secs, "conns": conns - m[1][0], "rts": rts - m[1][1], "bytes": nbytes}


def run(host, cmd, want_len=None):
    ok, out = host.run_shell_command(StringCommand(cmd))
    if not ok:
        raise RuntimeError(f"{host.name}: `{cmd}` failed: {out.stderr}")
    if want_len is not None:
        got = sum(len(line) + 1 for line in out.stdout_lines)
        if got != want_len:
            raise RuntimeError(f"{host.name}: `{cmd}` gave {got} bytes, want {want_len}")


def connect(host):
    host.connect(raise_exceptions=True, show_errors=False)


def case(b: Bench, name: str, reps: int, big_reps: int, big_file: str) -> list[dict]:
    out = []
    if name == "connect_first":
        _, (h,) = b.state(b.instances[:1])  # loads the connector (not timed)
        m = b.mark()
        connect(h)
        out.append(b.sample(m))
        h.disconnect()
    elif name == "connect_further":
        _, hosts = b.state(b.instances)
        connect(hosts[0])
        hosts[0].disconnect()
        for i in range(reps):
            h = hosts[1 + i % (len(hosts) - 1)]
            m = b.mark()
            connect(h)
            out.append(b.sample(m))
            h.disconnect()
    elif name == "connect_further_open":
        _, hosts = b.state(b.instances[:2])
        connect(hosts[0])
        for _ in range(reps):
            m = b.mark()
            connect(hosts[1])
            out.append(b.sample(m))
            hosts[1].disconnect()
        hosts[0].disconnect()
    elif name == "connect_16":
        for _ in range(reps):
            state, hosts = b.state(b.instances[:16])
            m = b.mark()
            greenlets = [state.pool.spawn(connect, h) for h in hosts]
            gevent.joinall(greenlets, raise_error=True)
            out.append(b.sample(m))
            for h in hosts:
                h.disconnect()
    elif name in ("exec_true", "exec_1m", "put_1k", "get_1k"):
        _, (h,) = b.state(b.instances[:1])
        connect(h)
        data = b"k" * 1024
        h.put_file(io.BytesIO(data), "/tmp/bench-1k")
        for _ in range(reps):
            m = b.mark()
            n = 0
            if name == "exec_true":
                run(h, "true")
            elif name == "exec_1m":
                run(h, ONE_MIB_CMD, 1 << 20)
                n = 1 << 20
            elif name == "put_1k":
                h.put_file(io.BytesIO(data), "/tmp/bench-1k")
                n = 1024
            else:
                sink = Sink()
                h.get_file("/tmp/bench-1k", sink)
                if sink.n != 1024:
                    raise RuntimeError(f"get_1k: {sink.n} bytes")
                n = 1024
            out.append(b.sample(m, n))
        h.disconnect()
    elif name in ("put_256m", "get_256m"):
        size = os.path.getsize(big_file)
        _, (h,) = b.state(b.instances[:1])
        connect(h)
        if name == "get_256m":  # reuse what put_256m left behind
            _, have = h.run_shell_command(StringCommand("stat -c %s /tmp/bench-big 2>/dev/null || true"))
            if have.stdout.strip() != str(size):
                h.put_file(big_file, "/tmp/bench-big")
        for _ in range(big_reps):
            m = b.mark()
            if name == "put_256m":
                h.put_file(big_file, "/tmp/bench-big")
            else:
                sink = Sink()
                h.get_file("/tmp/bench-big", sink)
                if sink.n != size:
                    raise RuntimeError(f"get_256m: {sink.n} bytes, want {size}")
            out.append(b.sample(m, size))
        if name == "get_256m":
            run(h, "rm -f /tmp/bench-big")
        h.disconnect()
    else:
        raise SystemExit(f"unknown case {name}")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connector", required=True, choices=["lxd_wasm", "lxd_api"])
    p.add_argument("--remote", default="wan")
    p.add_argument("--instances", required=True)
    p.add_argument("--control")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--big-reps", type=int, default=3)
    p.add_argument("--big-file", default="")
    p.add_argument("--cases", required=True)
    args = p.parse_args()
    b = Bench(args)
    for name in args.cases.split(","):
        before, _ = rss_kb()
        reset_peak_rss()
        samples = case(b, name, args.reps, args.big_reps, args.big_file)
        _, peak = rss_kb()
        print(json.dumps({"case": name, "rss_before_kb": before, "peak_rss_kb": peak, "samples": samples}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
