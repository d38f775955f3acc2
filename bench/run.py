#!/usr/bin/env python3
"""The WAN benchmark: our host API, our CLI, our pyinfra connector, the
PyPI connector (pyinfra-lxd-api-connector 0.2.0), lxc and curl, through a
delay proxy that emulates the round-trip time, against the local LXD.

    python3 bench/run.py                 # 0 and 27 ms RTT; writes docs/benchmark.md and .svg
    python3 bench/run.py --rtt 27        # one RTT (the docs then show that one only)

It builds what it needs (the CLI, the bench_api example, the delay proxy, a
venv with both pyinfra connectors), starts or reuses the local LXD with
tests/lxd-up.sh (plus containers bench1..bench16) and checks that the LXD
daemon idles before it measures. See bench/README.md. Needs root (as
tests/lxd-up.sh does). Only standard-library Python.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_DIR = Path("/var/cache/lxd-connector/target")
RELEASE = TARGET_DIR / "release"
CLI = RELEASE / "lxd-connector"
BENCH_API = RELEASE / "examples" / "bench_api"
PROXY = RELEASE / "delay-proxy"
PYINFRA_VERSION = "3.10.0"
PYPI_CONNECTOR = "pyinfra-lxd-api-connector==0.2.0"
INSTANCES = [f"bench{i}" for i in range(1, 17)]
REMOTE = "wan"
MIB = 1 << 20
ONE_MIB_CMD = "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1048576"
# What the API and the CLI scripts run per host for the "deploy" cases
# (bench_api.rs has the same list): 9 commands, the upload after the first.
DEPLOY_COMMANDS = [
    "mkdir -p /tmp/bench-deploy",
    "uname -a",
    "cat /etc/hostname",
    "test -e /tmp/bench-deploy/motd || echo missing",
    "id -u",
    "ls -la /tmp/bench-deploy",
    "grep -c bench /tmp/bench-deploy/motd || true",
    "echo line >> /tmp/bench-deploy/motd",
    "stat -c %s /tmp/bench-deploy/motd",
]

TOOLS = {
    "api": "our host API",
    "cli": "our CLI",
    "pyinfra": "our pyinfra (@lxd_wasm)",
    "pypi": "PyPI connector (@lxd_api)",
    "lxc": "lxc",
    "curl": "curl (HTTP/1.1)",
    "curl_h2": "curl (HTTP/2)",
}
OURS = ["api", "cli", "pyinfra"]
PEERS = ["pypi", "lxc", "curl", "curl_h2"]

CASES = {
    "connect_first": "connect, first instance",
    "connect_further": "connect, further instance (remote known, its connection idle)",
    "connect_further_open": "connect, further instance (first session still open)",
    "connect_16": "connect 16 instances in parallel",
    "exec_true": "exec `true`",
    "exec_1m": "exec, 1 MiB of output",
    "put_1k": "put 1 KiB",
    "get_1k": "get 1 KiB",
    "put_256m": "put 256 MiB",
    "get_256m": "get 256 MiB",
    "deploy_1": "deploy: 9 commands + 1 upload, 1 host",
    "deploy_16": "deploy: 9 commands + 1 upload, 16 hosts",
}
PLOT_LABELS = {
    "connect_first": "connect, first instance",
    "connect_further": "connect, further (connection idle)",
    "connect_further_open": "connect, further (first still open)",
    "connect_16": "connect 16 in parallel",
    "exec_true": "exec true",
    "exec_1m": "exec, 1 MiB output",
    "put_1k": "put 1 KiB",
    "get_1k": "get 1 KiB",
    "put_256m": "put 256 MiB",
    "get_256m": "get 256 MiB",
    "deploy_1": "deploy 9 cmd + 1 upload, 1 host",
    "deploy_16": "deploy 9 cmd + 1 upload, 16 hosts",
}
CONNECT = ["connect_first", "connect_further", "connect_further_open", "connect_16"]
FAST = ["exec_true", "exec_1m", "put_1k", "get_1k"]
BIG = ["put_256m", "get_256m"]
DEPLOY = ["deploy_1", "deploy_16"]
# Cases that need a fresh process per sample for the pyinfra connectors
# (our connector pools connections per process).
COLD = ["connect_first", "connect_further_open", "connect_16"]

CASES_OF = {
    "api": CONNECT + FAST + BIG + DEPLOY,
    "cli": FAST + BIG + DEPLOY,
    "pyinfra": CONNECT + FAST + BIG + DEPLOY,
    "pypi": CONNECT + FAST + BIG + DEPLOY,
    "lxc": FAST + BIG + DEPLOY,
    "curl": ["put_1k", "get_1k"] + BIG,
    "curl_h2": ["put_1k", "get_1k"] + BIG,
}


class Hang(Exception):
    """A process that did not finish in time (and was killed)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    log(f"ERROR: {msg}")
    sys.exit(1)


def sh(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


# ------------------------------------------------------------------ machine


def lxd_daemon_pid() -> int | None:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and os.path.basename(parts[1]) == "lxd" and (len(parts) == 2 or parts[2].startswith("-")):
            return int(parts[0])
    return None


def proc_cpu_s(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / os.sysconf("SC_CLK_TCK"), sum(vals) / os.sysconf("SC_CLK_TCK")


def idle_check(seconds: float = 3.0) -> tuple[float, float]:
    """LXD daemon CPU and whole-machine CPU (in % of one core) over `seconds`."""
    pid = lxd_daemon_pid()
    a, (b0, _) = proc_cpu_s(pid), machine_busy_s()
    time.sleep(seconds)
    a2, (b1, _) = proc_cpu_s(pid), machine_busy_s()
    return 100 * (a2 - a) / seconds, 100 * (b1 - b0) / seconds


def machine_facts() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    commit = first(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout.splitlines()
    # What was built beyond the commit (the benchmark's own outputs aside).
    dirty = [line[3:] for line in status if not line[3:].startswith(("docs/benchmark.", "bench/"))]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "kernel": platform.release(),
        "lxd": first(["lxd", "--version"]),
        "lxc": first(["lxc", "--version"]),
        "curl": first(["curl", "--version"]),
        "python": platform.python_version(),
        "pyinfra": PYINFRA_VERSION,
        "commit": commit + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else ""),
    }


# ------------------------------------------------------------------ setup


def lxd_up() -> dict:
    env = dict(os.environ, LXD_TEST_CONTAINERS=" ".join(INSTANCES))
    env.pop("LXD_CONF", None)
    out = sh(["bash", str(ROOT / "tests" / "lxd-up.sh")], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        die("tests/lxd-up.sh failed")
    facts = {}
    for line in out.stdout.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            facts[k] = v.strip('"')
    return facts


def ensure_idle_lxd(restart: bool) -> tuple[float, float]:
    for attempt in range(3):
        lxd_cpu, machine = idle_check()
        log(f"LXD daemon CPU {lxd_cpu:.0f}% of a core, whole machine {machine:.0f}% (over 3 s)")
        if lxd_cpu < 15:
            if machine > 40:
                log("WARNING: something else keeps the machine busy; the numbers will be noisy")
            return lxd_cpu, machine
        if restart and attempt == 0:
            pid = lxd_daemon_pid()
            log(f"the LXD daemon (pid {pid}) is busy with no benchmark running: restarting it (containers keep running)")
            os.kill(pid, signal.SIGTERM)
            for _ in range(40):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)
            lxd_up()
            continue
        time.sleep(10)
    die("the LXD daemon keeps a core busy with no request in flight (see /work/shared/docs/lxd-api-facts.md); "
        "rerun with --restart-busy-lxd, or restart it by hand")


def build(venv: Path) -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET_DIR))
    log("building the CLI, the bench_api example and the delay proxy (cargo build --release)")
    sh(["cargo", "build", "--release", "-p", "lxd-connector", "--bins", "--example", "bench_api", "-p", "delay-proxy"], cwd=ROOT, env=env)
    if not (venv / "bin" / "python").exists():
        log(f"creating the venv {venv}")
        sh([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    log(f"pip install pyinfra=={PYINFRA_VERSION} {PYPI_CONNECTOR}")
    sh(pip + [f"pyinfra=={PYINFRA_VERSION}", PYPI_CONNECTOR], env=env)
    log("pip install ./python (our connector)")
    sh(pip + ["--force-reinstall", "--no-deps", str(ROOT / "python")], env=env)


def bench_config(work: Path, conf_src: Path, lxd_url: str, proxy_port: int) -> Path:
    """A copy of the test client config with a remote `wan` through the proxy
    (same pinned certificate: its SAN holds 127.0.0.1), at HOME/.config/lxc
    so that the PyPI connector (which reads ~/.config/lxc) finds it too."""
    conf = work / "home" / ".config" / "lxc"
    if conf.exists():
        shutil.rmtree(conf)
    (conf / "servercerts").mkdir(parents=True)
    os.chmod(conf, 0o700)
    for name in ("client.crt", "client.key"):
        shutil.copy2(conf_src / name, conf / name)
    shutil.copy2(conf_src / "servercerts" / "testlxd.crt", conf / "servercerts" / "testlxd.crt")
    shutil.copy2(conf_src / "servercerts" / "testlxd.crt", conf / "servercerts" / f"{REMOTE}.crt")
    (conf / "config.yml").write_text(
        "default-remote: testlxd\n"
        "remotes:\n"
        "  testlxd:\n"
        f"    addr: {lxd_url}\n"
        "    auth_type: tls\n    project: default\n    protocol: lxd\n    public: false\n"
        f"  {REMOTE}:\n"
        f"    addr: https://127.0.0.1:{proxy_port}\n"
        "    auth_type: tls\n    project: default\n    protocol: lxd\n    public: false\n"
        "aliases: {}\n"
    )
    return conf


def test_files(work: Path) -> dict:
    files = {"1k": work / "1k.bin", "big": work / "256m.bin", "motd": work / "motd"}
    if not files["1k"].exists() or files["1k"].stat().st_size != 1024:
        files["1k"].write_bytes(os.urandom(1024))
    if not files["big"].exists() or files["big"].stat().st_size != 256 * MIB:
        log("writing a 256 MiB random file")
        with open(files["big"], "wb") as f:
            for _ in range(256):
                f.write(os.urandom(MIB))
    files["motd"].write_bytes(b"benchmark motd\n" * 8)
    return files


# ------------------------------------------------------------------ proxy


class Proxy:
    def __init__(self, rtt_ms: float, upstream: str, logfile: Path):
        self.log = open(logfile, "ab")
        self.p = subprocess.Popen(
            [str(PROXY), "--upstream", upstream, "--rtt-ms", str(rtt_ms), "--max-seconds", "5400"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        ports = {}
        while len(ports) < 2:
            line = self.p.stdout.readline()
            if not line:
                die("the delay proxy did not start")
            k, v = line.strip().split("=")
            ports[k] = int(v)
        self.port, self.control = ports["PROXY_PORT"], ports["CONTROL_PORT"]

    def stats(self) -> tuple[int, int]:
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as s:
            s.sendall(b"stats\n")
            d = json.loads(s.makefile().readline())
        return d["connections"], d["round_trips"]

    def stop(self) -> None:
        try:
            self.p.stdin.close()  # end of file: it exits
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


# ------------------------------------------------------------------ runners


class Runner:
    def __init__(self, args, work: Path, files: dict, proxy: Proxy, venv: Path, conf: Path):
        self.args, self.work, self.files, self.proxy, self.venv = args, work, files, proxy, venv
        self.env = dict(os.environ, LXD_CONF=str(conf), HOME=str(work / "home"))
        self.env.pop("LXD_CONNECTOR_CACHE_DIR", None)
        self.lxd_pid = lxd_daemon_pid()
        self.py = str(venv / "bin" / "python")
        self.curl_base = [
            "curl", "-sS", "-f", "--cert", str(conf / "client.crt"), "--key", str(conf / "client.key"),
            "--cacert", str(conf / "servercerts" / f"{REMOTE}.crt"),
        ]
        self.url = f"https://127.0.0.1:{proxy.port}/1.0/instances"

    # -- helpers

    def lxd_cpu(self) -> float:
        return proc_cpu_s(self.lxd_pid)

    def remove_in(self, instance: str, path: str) -> None:
        """Removes a file or folder in an instance, not through the proxy and
        not measured: on the host's copy of the rootfs (the test LXD uses a
        `dir` pool), else with `lxc exec` over the unix socket."""
        rootfs = Path(f"/var/lib/lxd/containers/{instance}/rootfs")
        if rootfs.is_dir():
            target = rootfs / path.lstrip("/")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            return
        env = dict(os.environ, HOME="/root")
        env.pop("LXD_CONF", None)
        sh(["lxc", "--force-local", "exec", instance, "--", "rm", "-rf", path], env=env, stdin=subprocess.DEVNULL,
           capture_output=True, timeout=60)

    def reset_deploy(self, n: int) -> None:
        for inst in INSTANCES[:n]:
            self.remove_in(inst, "/tmp/bench-deploy")

    def wait(self, p: subprocess.Popen, argv, timeout: float):
        """wait4 with a time limit: kills the process (and fails) past it."""
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode == -signal.SIGKILL:
            raise Hang(f"{' '.join(map(str, argv))[:200]} hung: killed after {timeout:.0f} s")
        return ru

    def timed_process(self, argv, stdout=None, timeout: float = 120) -> dict:
        """Runs one process; wall time, its peak RSS and CPU, the LXD daemon's
        and the proxy's CPU, and what the proxy saw."""
        c0, r0 = self.proxy.stats()
        l0, p0 = self.lxd_cpu(), proc_cpu_s(self.proxy.p.pid)
        with tempfile.TemporaryFile() as err:
            t = time.perf_counter()
            p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=err)
            ru = self.wait(p, argv, timeout)
            secs = time.perf_counter() - t
            if p.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{' '.join(map(str, argv))[:200]} exited {p.returncode}: {err.read()[-2000:].decode(errors='replace')}")
        c1, r1 = self.proxy.stats()
        return {"s": secs, "conns": c1 - c0, "rts": r1 - r0, "rss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime,
                "lxd_cpu_s": self.lxd_cpu() - l0, "proxy_cpu_s": proc_cpu_s(self.proxy.p.pid) - p0}

    def json_lines(self, argv) -> list[dict]:
        p = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT,
                           timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)[:200]} exited {p.returncode}: {p.stderr[-3000:]}")
        return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]

    def reps_for(self, tool: str, case: str) -> int:
        a = self.args
        if case in BIG:
            return a.big_reps
        if case in DEPLOY:
            return a.deploy_reps
        if tool in ("pyinfra", "pypi") and case in COLD:
            return a.cold_reps
        if tool in ("cli", "lxc", "curl", "curl_h2"):
            return a.process_reps
        return a.reps

    # -- tools

    def run(self, tool: str, case: str) -> dict:
        before = self.lxd_cpu()
        if tool == "api":
            res = self.api(case)
        elif tool in ("pyinfra", "pypi"):
            res = self.pyinfra(tool, case)
        else:
            res = self.process_tool(tool, case)
        n = max(1, len(res["samples"]))
        res["lxd_cpu_per_sample_s"] = (self.lxd_cpu() - before) / n  # includes the case's setup
        return res

    def api(self, case: str) -> dict:
        reps = self.reps_for("api", case)
        argv = [str(BENCH_API), "--remote", REMOTE, "--instances", ",".join(INSTANCES), "--control",
                f"127.0.0.1:{self.proxy.control}", "--reps", str(reps), "--big-reps", str(reps),
                "--big-file", str(self.files["big"]), "--cases", case]
        if case in DEPLOY:
            self.reset_deploy(16 if case == "deploy_16" else 1)
        (d,) = self.json_lines(argv)
        return {"samples": d["samples"], "rss_before_kb": d["rss_before_kb"], "peak_rss_kb": d["peak_rss_kb"]}

    def pyinfra(self, tool: str, case: str) -> dict:
        connector = "lxd_wasm" if tool == "pyinfra" else "lxd_api"
        reps = self.reps_for(tool, case)
        if case in DEPLOY:
            n = 16 if case == "deploy_16" else 1
            hosts = ",".join(f"@{connector}/{REMOTE}:{i}" for i in INSTANCES[:n])
            samples = []
            for _ in range(reps):
                self.reset_deploy(n)
                samples.append(self.timed_process([self.py, "-m", "pyinfra", "-y", hosts, str(ROOT / "bench" / "deploy.py")],
                                                  timeout=600))
            return {"samples": samples, "peak_rss_kb": max(s["rss_kb"] for s in samples)}
        argv = [self.py, str(ROOT / "bench" / "py_api.py"), "--connector", connector, "--remote", REMOTE,
                "--instances", ",".join(INSTANCES), "--control", f"127.0.0.1:{self.proxy.control}",
                "--big-file", str(self.files["big"]), "--cases", case]
        if case in COLD:
            samples, peak, before = [], 0, 0
            for _ in range(reps):
                (d,) = self.json_lines(argv + ["--reps", "1"])
                samples += d["samples"]
                peak, before = max(peak, d["peak_rss_kb"]), d["rss_before_kb"]
            return {"samples": samples, "rss_before_kb": before, "peak_rss_kb": peak}
        (d,) = self.json_lines(argv + ["--reps", str(reps), "--big-reps", str(reps)])
        return {"samples": d["samples"], "rss_before_kb": d["rss_before_kb"], "peak_rss_kb": d["peak_rss_kb"]}

    def process_argv(self, tool: str, case: str) -> tuple[list, str | None]:
        """The command line for one sample, and the expected output size."""
        t = f"{REMOTE}:bench1"
        f1k, big = str(self.files["1k"]), str(self.files["big"])
        if tool == "cli":
            return {
                "exec_true": ([CLI, "exec", t, "--", "true"], None),
                "exec_1m": ([CLI, "exec", t, "--", ONE_MIB_CMD], MIB),
                "put_1k": ([CLI, "put", f1k, f"{t}/tmp/bench-1k"], None),
                "get_1k": ([CLI, "get", f"{t}/tmp/bench-1k", "-"], 1024),
                "put_256m": ([CLI, "put", big, f"{t}/tmp/bench-big"], None),
                "get_256m": ([CLI, "get", f"{t}/tmp/bench-big", "-"], None),
            }[case]
        if tool == "lxc":
            return {
                "exec_true": (["lxc", "exec", t, "--", "true"], None),
                "exec_1m": (["lxc", "exec", t, "--", "sh", "-c", ONE_MIB_CMD], MIB),
                "put_1k": (["lxc", "file", "push", "-q", f1k, f"{t}/tmp/bench-1k"], None),
                "get_1k": (["lxc", "file", "pull", "-q", f"{t}/tmp/bench-1k", "-"], 1024),
                "put_256m": (["lxc", "file", "push", "-q", big, f"{t}/tmp/bench-big"], None),
                "get_256m": (["lxc", "file", "pull", "-q", f"{t}/tmp/bench-big", "-"], None),
            }[case]
        curl = self.curl_base + (["--http1.1"] if tool == "curl" else [])
        # "Expect:": no 100-continue round trip before an HTTP/1.1 upload.
        put = curl + ["-o", "/dev/null", "-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                      "-H", "X-LXD-type: file", "-H", "X-LXD-write: overwrite"]
        return {
            "put_1k": (put + ["-T", f1k, f"{self.url}/bench1/files?path=/tmp/bench-1k"], None),
            "get_1k": (curl + [f"{self.url}/bench1/files?path=/tmp/bench-1k"], 1024),
            "put_256m": (put + ["-T", big, f"{self.url}/bench1/files?path=/tmp/bench-big"], None),
            "get_256m": (curl + ["-o", "/dev/null", f"{self.url}/bench1/files?path=/tmp/bench-big"], None),
        }[case]

    def process_tool(self, tool: str, case: str) -> dict:
        reps = self.reps_for(tool, case)
        if case in DEPLOY:
            return self.script_deploy(tool, 16 if case == "deploy_16" else 1, reps)
        if case == "get_1k" or case == "get_256m":  # something to read (the put case's file, if there)
            src = self.files["1k"] if case == "get_1k" else self.files["big"]
            path = "/tmp/bench-1k" if case == "get_1k" else "/tmp/bench-big"
            there = Path(f"/var/lib/lxd/containers/bench1/rootfs{path}")
            if not (there.is_file() and there.stat().st_size == src.stat().st_size):
                self.timed_process([CLI, "put", str(src), f"{REMOTE}:bench1{path}"], timeout=300)
        argv, want = self.process_argv(tool, case)
        samples, hangs = [], []
        for _ in range(reps + 2):  # a sample that hangs is retried (twice at most)
            if len(samples) == reps:
                break
            try:
                if want is None:
                    samples.append(self.timed_process(argv, timeout=60 if case not in BIG else 300))
                    continue
                with tempfile.TemporaryFile(dir=self.work) as out:
                    s = self.timed_process(argv, stdout=out, timeout=60)
                    size = out.seek(0, os.SEEK_END)
            except Hang as e:
                log(f"WARNING: {e}")
                hangs.append(str(e))
                continue
            if size != want:
                raise RuntimeError(f"{tool} {case}: {size} bytes of output, want {want}")
            samples.append(s)
        if case == "get_256m":
            self.remove_in("bench1", "/tmp/bench-big")
        if not samples:
            raise RuntimeError(f"every sample hung: {hangs[0]}")
        return {"samples": samples, "peak_rss_kb": max(s["rss_kb"] for s in samples), "hangs": hangs}

    def script_deploy(self, tool: str, n: int, reps: int) -> dict:
        """9 commands and 1 upload per host as a sequence of CLI calls; the
        hosts in parallel."""
        motd = str(self.files["motd"])

        def calls(inst):
            t = f"{REMOTE}:{inst}"
            out = []
            for i, cmd in enumerate(DEPLOY_COMMANDS):
                out.append([CLI, "exec", t, "--", cmd] if tool == "cli" else ["lxc", "exec", t, "--", "sh", "-c", cmd])
                if i == 0:
                    out.append([CLI, "put", motd, f"{t}/tmp/bench-deploy/motd"] if tool == "cli"
                               else ["lxc", "file", "push", "-q", motd, f"{t}/tmp/bench-deploy/motd"])
            return out

        def one_host(inst):
            peak, cpu = 0, 0.0
            for argv in calls(inst):
                with tempfile.TemporaryFile() as err:
                    p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
                    ru = self.wait(p, argv, 15)
                    if p.returncode != 0:
                        err.seek(0)
                        raise RuntimeError(f"{argv}: {err.read()[-2000:].decode(errors='replace')}")
                peak, cpu = max(peak, ru.ru_maxrss), cpu + ru.ru_utime + ru.ru_stime
            return peak, cpu

        samples, hangs = [], []
        for _ in range(reps + 2):  # a run in which a call hangs is retried (twice at most)
            if len(samples) == reps:
                break
            self.reset_deploy(n)
            c0, r0 = self.proxy.stats()
            l0, p0 = self.lxd_cpu(), proc_cpu_s(self.proxy.p.pid)
            t = time.perf_counter()
            try:
                with concurrent.futures.ThreadPoolExecutor(n) as ex:
                    per_host = list(ex.map(one_host, INSTANCES[:n]))
            except (Hang, RuntimeError) as e:  # lxc exec hangs; lxc file push sometimes fails
                log(f"WARNING: {e}")
                hangs.append(str(e) if isinstance(e, Hang) else f"failed: {e}")
                continue
            secs = time.perf_counter() - t
            c1, r1 = self.proxy.stats()
            samples.append({"s": secs, "conns": c1 - c0, "rts": r1 - r0, "rss_kb": max(p for p, _ in per_host),
                            "cpu_s": sum(c for _, c in per_host),
                            "lxd_cpu_s": self.lxd_cpu() - l0, "proxy_cpu_s": proc_cpu_s(self.proxy.p.pid) - p0})
        if not samples:
            raise RuntimeError(f"every run hung or failed ({len(hangs)} tries), e.g. {hangs[0]}")
        return {"samples": samples, "peak_rss_kb": max(s["rss_kb"] for s in samples), "hangs": hangs}

    # -- checks

    def check_paths(self) -> None:
        """TLS through the proxy verifies for every client, and the deploy
        makes 9 commands and 1 upload with both pyinfra connectors."""
        self.timed_process(["lxc", "info", f"{REMOTE}:"])
        self.timed_process(self.curl_base + ["-o", "/dev/null", f"https://127.0.0.1:{self.proxy.port}/1.0"])
        self.timed_process([CLI, "info", f"{REMOTE}:bench1"])  # also fills the CLI's component cache
        for connector in ("lxd_wasm", "lxd_api"):
            self.reset_deploy(1)
            p = subprocess.run([self.py, str(ROOT / "bench" / "count_deploy.py"), "-y", f"@{connector}/{REMOTE}:bench1",
                                str(ROOT / "bench" / "deploy.py")], env=self.env, capture_output=True, text=True)
            counts = [line for line in p.stderr.splitlines() if line.startswith("COUNTS ")]
            if p.returncode != 0 or not counts:
                die(f"the deploy failed with @{connector}: {p.stdout[-2000:]} {p.stderr[-2000:]}")
            got = json.loads(counts[-1][7:])
            if got.get("run_shell_command") != 9 or got.get("put_file") != 1:
                die(f"bench/deploy.py with @{connector} made {got}, not 9 run_shell_command + 1 put_file")
        log("TLS through the proxy verifies (lxc, curl, lxd-connector); the deploy makes 9 commands + 1 upload per host")

    def cleanup(self) -> None:
        """Removes the test files, and the exec logs that the PyPI connector
        and lxc leave on the server (ours deletes them), so that nothing
        piles up across runs."""
        for inst in INSTANCES:
            for f in Path(f"/var/log/lxd/{inst}").glob("exec_*"):
                try:
                    f.unlink()
                except OSError:
                    pass
        for path in ("/tmp/bench-big", "/tmp/bench-1k", "/tmp/bench-deploy"):
            for inst in INSTANCES:
                try:
                    self.remove_in(inst, path)
                except Exception:  # noqa: BLE001 - best effort
                    pass


# ------------------------------------------------------------------ report


def med(res: dict, key: str = "s") -> float:
    return statistics.median(s[key] for s in res["samples"])


def fmt_time(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 0.1:
        return f"{s * 1000:.0f} ms"
    return f"{s * 1000:.1f} ms"


def cell(res: dict | None, case: str) -> str:
    if not res:
        return "—"
    t = fmt_time(med(res))
    if case in BIG:
        t += f" ({256 / med(res):.0f} MiB/s)"
    return f"{t} · {med(res, 'conns'):g} c · {med(res, 'rts'):g} rt"


def ratio(results: dict, a: str, b: str, case: str) -> float | None:
    ra, rb = results.get(a, {}).get(case), results.get(b, {}).get(case)
    if not ra or not rb:
        return None
    return med(ra) / med(rb)


def best_curl(results: dict, case: str) -> tuple[str, float] | None:
    c = [(t, med(results[t][case])) for t in ("curl", "curl_h2") if case in results.get(t, {})]
    return min(c, key=lambda x: x[1]) if c else None


RATIO_COLS = [("api", "pypi"), ("pyinfra", "pypi"), ("api", "lxc"), ("cli", "lxc"), ("pyinfra", "lxc"),
              ("api", "curl*"), ("cli", "curl*"), ("pyinfra", "curl*")]


def ratio_table(results: dict) -> list[str]:
    short = {"api": "API", "cli": "CLI", "pyinfra": "pyinfra", "pypi": "PyPI", "lxc": "lxc", "curl*": "best curl"}
    lines = ["| case | " + " | ".join(f"{short[a]} ÷ {short[b]}" for a, b in RATIO_COLS) + " |",
             "|---" * (len(RATIO_COLS) + 1) + "|"]
    for case, label in CASES.items():
        row = []
        for a, b in RATIO_COLS:
            if b == "curl*":
                bc = best_curl(results, case)
                ra = results.get(a, {}).get(case)
                r = med(ra) / bc[1] if bc and ra else None
            else:
                r = ratio(results, a, b, case)
            row.append(f"{r:.2f}×" if r is not None else "")
        if any(row):
            lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def results_table(results: dict) -> list[str]:
    tools = [t for t in TOOLS if t in results]
    lines = ["| case | " + " | ".join(TOOLS[t] for t in tools) + " |", "|---" * (len(tools) + 1) + "|"]
    for case, label in CASES.items():
        if not any(case in results[t] for t in tools):
            continue
        extra = ""
        if case in DEPLOY:
            extra = " ¹"
        lines.append(f"| {label}{extra} | " + " | ".join(cell(results[t].get(case), case) for t in tools) + " |")
    return lines


def targets(results: dict, rtt: float) -> list[tuple[str, str, bool | None]]:
    out = []

    def m(tool, case):
        r = results.get(tool, {}).get(case)
        return med(r) if r else None

    a, p = m("api", "exec_true"), m("pypi", "exec_true")
    py = m("pyinfra", "exec_true")
    if a and p:
        out.append(("our exec ≤ 0.65× the PyPI connector's exec",
                    f"API {fmt_time(a)} vs {fmt_time(p)} = {a / p:.2f}×; through pyinfra {fmt_time(py)} = {py / p:.2f}×" if py else f"{a / p:.2f}×",
                    a / p <= 0.65 and (py is None or py / p <= 0.65)))
    r = results.get("api", {}).get("connect_further")
    if r:
        rts = med(r, "rts")
        ro = results.get("api", {}).get("connect_further_open")
        extra = f"; with the first session still open: {med(ro, 'rts'):g} round trips ({med(ro, 'conns'):g} new connection, TCP + TLS + request)" if ro else ""
        out.append(("connecting a further instance on a known remote ≤ 1 round trip",
                    f"{rts:g} round trip, {med(r, 'conns'):g} new connections, {fmt_time(med(r))}{extra}", rts <= 1))
    a, py, p = m("api", "connect_16"), m("pyinfra", "connect_16"), m("pypi", "connect_16")
    if a and p:
        txt = f"API {fmt_time(a)} = {a / p:.2f}×" + (f", through pyinfra {fmt_time(py)} = {py / p:.2f}×" if py else "") + f" of {fmt_time(p)}"
        out.append(("16 parallel connects ≤ 0.5× the PyPI connector's time", txt, a / p <= 0.5 and (py is None or py / p <= 0.5)))
    c, lx = m("cli", "exec_true"), m("lxc", "exec_true")
    if c and lx:
        out.append(("`lxd-connector exec` whole process ≤ 0.2× `lxc exec`", f"{fmt_time(c)} vs {fmt_time(lx)} = {c / lx:.2f}×", c / lx <= 0.2))
    d, dp = m("pyinfra", "deploy_16"), m("pypi", "deploy_16")
    if d and dp:
        out.append(("pyinfra deploy (9 commands + 1 upload) on 16 containers ≤ 0.6× the PyPI connector's wall time",
                    f"{fmt_time(d)} vs {fmt_time(dp)} = {d / dp:.2f}×", d / dp <= 0.6))
    for case in BIG:
        bc = best_curl(results, case)
        if not bc:
            continue
        parts, ok = [], True
        for tool in OURS:
            t = m(tool, case)
            if t is None:
                continue
            share = bc[1] / t
            ok = ok and share >= 0.8
            rss = results[tool][case].get("peak_rss_kb", 0) / 1024
            parts.append(f"{TOOLS[tool]} {256 / t:.0f} MiB/s = {share * 100:.0f}% (peak RSS {rss:.0f} MiB)")
        out.append((f"{CASES[case]} ≥ 80% of curl's throughput, memory flat",
                    f"best curl ({TOOLS[bc[0]]}) {256 / bc[1]:.0f} MiB/s; " + "; ".join(parts), ok))
    return out


def memory_table(results: dict) -> list[str]:
    lines = ["| tool | put 256 MiB: peak RSS | get 256 MiB: peak RSS | RSS before (in-process tools) |", "|---|---|---|---|"]
    for t in TOOLS:
        r = results.get(t, {})
        if "put_256m" not in r and "get_256m" not in r:
            continue
        def mb(case, key="peak_rss_kb"):
            v = r.get(case, {}).get(key)
            return f"{v / 1024:.0f} MiB" if v else "—"
        lines.append(f"| {TOOLS[t]} | {mb('put_256m')} | {mb('get_256m')} | {mb('put_256m', 'rss_before_kb')} |")
    return lines


def cpu_table(results: dict) -> list[str]:
    lines = ["| deploy | tool | wall | client CPU | LXD daemon CPU | proxy CPU |", "|---|---|---|---|---|---|"]
    for case in DEPLOY:
        for t in TOOLS:
            r = results.get(t, {}).get(case)
            if not r:
                continue
            def m(key):
                v = [x[key] for x in r["samples"] if key in x]
                return f"{statistics.median(v):.2f} s" if v else "—"
            lxd = m("lxd_cpu_s")
            if lxd == "—" and "lxd_cpu_per_sample_s" in r:
                lxd = f"{r['lxd_cpu_per_sample_s']:.2f} s"
            lines.append(f"| {CASES[case].split(', ')[-1]} | {TOOLS[t]} | {fmt_time(med(r))} | {m('cpu_s')} | {lxd} | {m('proxy_cpu_s')} |")
    return lines


def svg_plot(all_results: dict, path: Path) -> None:
    """Grouped horizontal bars (log scale), one panel per RTT."""
    rtts = sorted(all_results, key=float)
    colors = {"api": "#1b5e20", "cli": "#43a047", "pyinfra": "#81c784", "pypi": "#1565c0", "lxc": "#e65100",
              "curl": "#757575", "curl_h2": "#bdbdbd"}
    cases = [c for c in CASES if any(c in all_results[r].get(t, {}) for r in rtts for t in TOOLS)]
    bar, gap, label_w, panel_w, panel_gap, top = 9, 10, 230, 420, 70, 60
    rows = {c: [t for t in TOOLS if any(c in all_results[r].get(t, {}) for r in rtts)] for c in cases}
    height = top + sum(len(rows[c]) * bar + gap for c in cases) + 60
    width = label_w + len(rtts) * (panel_w + panel_gap) + 10
    lo, hi = 1e-3, 100.0  # 1 ms .. 100 s

    def x(s):
        s = min(max(s, lo), hi)
        return (math.log10(s) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * panel_w

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="10" y="20" font-size="14" font-weight="bold">lxd-connector benchmark: median wall time per case (log scale, shorter is better)</text>']
    for i, rtt in enumerate(rtts):
        x0 = label_w + i * (panel_w + panel_gap)
        o.append(f'<text x="{x0 + panel_w / 2}" y="44" text-anchor="middle" font-weight="bold">RTT {float(rtt):g} ms</text>')
        for tick, name in [(1e-3, "1 ms"), (1e-2, "10 ms"), (1e-1, "100 ms"), (1, "1 s"), (10, "10 s"), (100, "100 s")]:
            xt = x0 + x(tick)
            o.append(f'<line x1="{xt}" y1="{top - 6}" x2="{xt}" y2="{height - 50}" stroke="#ddd"/>')
            o.append(f'<text x="{xt}" y="{height - 36}" text-anchor="middle" fill="#555">{name}</text>')
        y = top
        for c in cases:
            for t in rows[c]:
                r = all_results[rtt].get(t, {}).get(c)
                if r:
                    s = med(r)
                    o.append(f'<rect x="{x0}" y="{y}" width="{max(1, x(s)):.1f}" height="{bar - 1}" fill="{colors[t]}"><title>{TOOLS[t]}: {fmt_time(s)}</title></rect>')
                    o.append(f'<text x="{x0 + x(s) + 3:.1f}" y="{y + bar - 1}" font-size="8" fill="#333">{fmt_time(s)}</text>')
                y += bar
            y += gap
    y = top
    for c in cases:
        h = len(rows[c]) * bar
        o.append(f'<text x="{label_w - 8}" y="{y + h / 2 + 4}" text-anchor="end">{PLOT_LABELS[c]}</text>')
        y += h + gap
    lx = 10
    for t, name in TOOLS.items():
        o.append(f'<rect x="{lx}" y="{height - 20}" width="10" height="10" fill="{colors[t]}"/>')
        o.append(f'<text x="{lx + 14}" y="{height - 11}">{name}</text>')
        lx += 14 + 7 * len(name) + 16
    o.append("</svg>")
    path.write_text("\n".join(o) + "\n")


def write_doc(all_results: dict, meta: dict, path: Path, svg: Path) -> str:
    rtts = sorted(all_results, key=float)
    main_rtt = rtts[-1]
    lines = [
        "# WAN benchmark",
        "",
        "Our host API, our CLI and our pyinfra connector against the PyPI connector",
        f"(`{PYPI_CONNECTOR}`), `lxc` and `curl`, all through the same delay proxy",
        "to the same local LXD, at " + " and ".join(f"{float(r):g} ms" for r in rtts) + " round-trip time.",
        "",
        "Generated by:",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        f"- date: {meta['date']}; run took {meta['duration_s'] / 60:.1f} min",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, {meta['machine']['memory_mib'] // 1024} GiB, Linux {meta['machine']['kernel']}",
        f"- LXD {meta['machine']['lxd']} on loopback (busybox containers bench1..bench16), lxc {meta['machine']['lxc']}, {meta['machine']['curl'].split(' (')[0]}, Python {meta['machine']['python']}, pyinfra {meta['machine']['pyinfra']}",
        f"- lxd-connector commit {meta['machine']['commit']}",
        f"- before the run: LXD daemon {meta['idle']['lxd_cpu_pct']:.0f}% of a core, whole machine {meta['idle']['machine_pct']:.0f}% (idle check over 3 s)",
        f"- samples (medians shown): {meta['reps']} in-process, {meta['process_reps']} per whole-process case, {meta['cold_reps']} fresh processes for the pyinfra connectors' cold connects, {meta['big_reps']} per 256 MiB transfer, {meta['deploy_reps']} per deploy",
        "",
        "**How it is measured.** `bench/delay-proxy` sits between every client and",
        "LXD (also at 0 ms, so the paths are the same): it delivers each chunk",
        "after RTT/2 in each direction, in order and without a bandwidth limit,",
        "and a new connection costs one RTT before bytes flow (the TCP",
        "handshake). It counts connections (**c**) and sequential round trips",
        "(**rt**): the handshake, and every client burst that the server",
        "answered (a burst sent after the client got data; requests pipelined",
        "behind others ride along). For parallel cases the round trips are",
        "summed over the connections. TLS is verified through the proxy (remote",
        "`wan` with the same pinned certificate, whose SAN is 127.0.0.1).",
        "In-process numbers: `host/examples/bench_api.rs` (our API) and",
        "`bench/py_api.py` (both pyinfra connectors through pyinfra's API, gevent",
        "monkey-patched as the pyinfra CLI is). CLI, `lxc` and `curl` numbers are",
        "whole processes. Deploys are `python -m pyinfra -y HOSTS bench/deploy.py`",
        "(whole process: start, connect, 9 commands + 1 upload per host;",
        "checked at each run with `bench/count_deploy.py`).",
        "",
        "¹ For the API the deploy is 9 `run` + 1 `put` per session on a fresh",
        "runtime, sessions in parallel; for the CLI and `lxc` it is a script of 9",
        "`exec` + 1 `put`/`file push` processes per host, hosts in parallel. Only",
        "the two pyinfra columns run the pyinfra deploy.",
        "",
        f"![median times]({svg.name})",
        "",
        f"## Targets at {float(main_rtt):g} ms RTT",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, measured, ok in targets(all_results[main_rtt], float(main_rtt)):
        lines.append(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")
    for rtt in reversed(rtts):
        res = all_results[rtt]
        lines += ["", f"## Results at {float(rtt):g} ms RTT", "",
                  "Median wall time · connections · round trips.", ""]
        lines += results_table(res)
        lines += ["", f"Ratios at {float(rtt):g} ms (median time of ours ÷ the peer's; below 1 is faster; "
                  "\"best curl\" is the faster of HTTP/1.1 and HTTP/2):", ""]
        lines += ratio_table(res)
        lines += ["", f"Peak resident memory of the client process, 256 MiB transfers at {float(rtt):g} ms:", ""]
        lines += memory_table(res)
        lines += ["", f"Where the CPU goes in the deploys at {float(rtt):g} ms (medians per run; the machine has "
                  f"{meta['machine']['cores']} cores, so wall time × {meta['machine']['cores']} is the CPU available):", ""]
        lines += cpu_table(res)
    if meta.get("errors"):
        lines += ["", "## Failures and hangs during the run", ""] + [f"- {e}" for e in meta["errors"]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt", default="0,27", help="round-trip times in ms, comma separated (default 0,27)")
    ap.add_argument("--reps", type=int, default=15, help="samples per in-process case (default 15)")
    ap.add_argument("--process-reps", type=int, default=10, help="samples per whole-process case (default 10)")
    ap.add_argument("--cold-reps", type=int, default=5, help="fresh pyinfra processes per cold connect case (default 5)")
    ap.add_argument("--big-reps", type=int, default=3, help="samples per 256 MiB transfer (default 3)")
    ap.add_argument("--deploy-reps", type=int, default=3, help="samples per deploy (default 3)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="subset of: " + ",".join(TOOLS))
    ap.add_argument("--cases", default=",".join(CASES), help="subset of: " + ",".join(CASES))
    ap.add_argument("--work", default="/var/tmp/lxd-connector-bench", help="scratch folder (venv, config, test files)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build and pip install")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmark.md and docs/benchmark.svg")
    ap.add_argument("--restart-busy-lxd", action="store_true", help="restart the LXD daemon if it spins while idle")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("run as root (tests/lxd-up.sh needs it)")
    for tool in ("lxc", "curl", "cargo"):
        if not shutil.which(tool):
            die(f"{tool} not found")
    rtts = [float(r) for r in args.rtt.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    cases = [c for c in args.cases.split(",") if c]
    for t in tools:
        if t not in TOOLS:
            die(f"unknown tool {t}")
    for c in cases:
        if c not in CASES:
            die(f"unknown case {c}")
    started = time.time()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    venv = work / "venv"

    facts_at_start = machine_facts()  # the commit that gets built
    log("starting or reusing the local LXD (tests/lxd-up.sh, plus bench1..bench16)")
    facts = lxd_up()
    conf_src = Path(facts["LXD_TEST_CONF"])
    lxd_url = facts["LXD_TEST_URL"]
    upstream = lxd_url.removeprefix("https://")
    if not args.no_build:
        build(venv)
    for exe in (CLI, BENCH_API, PROXY, venv / "bin" / "python"):
        if not Path(exe).exists():
            die(f"{exe} missing: run without --no-build")
    files = test_files(work)
    lxd_cpu, machine = ensure_idle_lxd(args.restart_busy_lxd)

    all_results: dict = {}
    errors: list[str] = []
    for rtt in rtts:
        key = f"{rtt:g}"
        proxy = Proxy(rtt, upstream, work / "delay-proxy.log")
        try:
            conf = bench_config(work, conf_src, lxd_url, proxy.port)
            r = Runner(args, work, files, proxy, venv, conf)
            r.check_paths()
            res: dict = {}
            for tool in tools:
                for case in CASES_OF[tool]:
                    if case not in cases:
                        continue
                    t0 = time.time()
                    try:
                        out = r.run(tool, case)
                    except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                        log(f"rtt {key} ms  {tool:8} {case:22} FAILED: {e}")
                        errors.append(f"{key} ms, {TOOLS[tool]}, {CASES[case]}: {str(e)[:500]}")
                        continue
                    res.setdefault(tool, {})[case] = out
                    for h in out.get("hangs", []):
                        errors.append(f"{key} ms, {TOOLS[tool]}, {CASES[case]}: one sample {h} (not counted)")
                    log(f"rtt {key} ms  {tool:8} {case:22} {cell(out, case)}   ({time.time() - t0:.0f} s)")
                r.cleanup()
            all_results[key] = res
        finally:
            proxy.stop()
        print(f"\n== RTT {key} ms ==")
        print("\n".join(results_table(all_results[key])))
        print()
        print("\n".join(ratio_table(all_results[key])))
        print()
        for name, measured, ok in targets(all_results[key], rtt):
            print(f"[{'MET ' if ok else 'MISS'}] {name}: {measured}")
        sys.stdout.flush()

    meta = {
        "command": "python3 bench/run.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.time() - started,
        "machine": facts_at_start,
        "idle": {"lxd_cpu_pct": lxd_cpu, "machine_pct": machine},
        "reps": args.reps, "process_reps": args.process_reps, "cold_reps": args.cold_reps,
        "big_reps": args.big_reps, "deploy_reps": args.deploy_reps,
        "errors": errors,
    }
    (work / "results.json").write_text(json.dumps({"meta": meta, "results": all_results}, indent=1))
    log(f"raw results: {work / 'results.json'}")
    if not args.no_docs:
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        svg = docs / "benchmark.svg"
        svg_plot(all_results, svg)
        write_doc(all_results, meta, docs / "benchmark.md", svg)
        log(f"wrote {docs / 'benchmark.md'} and {svg}")
    log(f"done in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
