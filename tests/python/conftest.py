"""Shared fixtures for the @lxd_wasm pyinfra tests.

Everything here runs against the real LXD brought up by ``tests/lxd-up.sh``
(remote ``testlxd``, running busybox containers p1..p8, stopped ``stopped1``).
Nothing is mocked. Independent checks of what landed on an instance go
through the ``lxc`` client, never through the connector under test.

``LXD_CONF`` is set here, for this process and every subprocess, to
``${LXD_TEST_CONF:-/var/lib/lxd-connector-test/conf}``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

LXD_CONF = os.environ.get("LXD_TEST_CONF") or "/var/lib/lxd-connector-test/conf"
os.environ["LXD_CONF"] = LXD_CONF
REMOTE = "testlxd"  # the default remote of the trusted test config
P_HOSTS = [f"p{i}" for i in range(1, 9)]
HERE = Path(__file__).resolve().parent
DEPLOYS = HERE / "deploys"


# The CLI runs here, so a pyinfra-debug.log it may write lands nowhere near
# the repository.
_CLI_CWD = tempfile.mkdtemp(prefix="pyinfra-cli-")


def pytest_unconfigure(config):
    shutil.rmtree(_CLI_CWD, ignore_errors=True)


def pytest_configure(config):
    if not Path(LXD_CONF, "config.yml").is_file():
        pytest.exit(f"no lxc client config at {LXD_CONF}; run tests/lxd-up.sh first", returncode=2)
    if shutil.which("lxc") is None:
        pytest.exit("the lxc client is needed for independent checks; run tests/lxd-up.sh", returncode=2)


# ------------------------------------------------------------ independent checks


def lxc_exec(instance: str, script: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``sh -c script`` in an instance with the real ``lxc`` client."""
    proc = subprocess.run(
        ["lxc", "exec", f"{REMOTE}:{instance}", "--", "sh", "-c", script],
        input=stdin,
        capture_output=True,
        env={**os.environ, "LXD_CONF": LXD_CONF},
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lxc exec {instance} {script!r} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc


def remote_sha1(instance: str, path: str) -> str:
    return lxc_exec(instance, f"sha1sum '{path}'").stdout.decode().split()[0]


@pytest.fixture
def remote_dir(request):
    """A fresh, unique folder path under /tmp, removed afterwards from every
    instance the test registered with ``remote_dir.on(...)``."""

    class RemoteDir(str):
        instances: set[str]

        def on(self, *instances: str) -> "RemoteDir":
            self.instances.update(instances)
            return self

    label = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    path = RemoteDir(f"/tmp/pyinfra-test-{label}-{uuid.uuid4().hex[:10]}")
    path.instances = set()
    yield path
    for instance in sorted(path.instances):
        lxc_exec(instance, f"rm -rf '{path}'", check=False)


# ------------------------------------------------------------ pyinfra in-process


@pytest.fixture
def make_state():
    """Builds a pyinfra State from inventory entries (names or ``(name,
    data)`` pairs) and connects every host, as the CLI does; disconnects at
    the end. Greenlets come from pyinfra's own gevent pools."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all

    states = []

    def build(*hosts, connect: bool = True, **config):
        inventory = Inventory((list(hosts), {}))
        state = State(inventory, Config(**config))
        states.append(state)
        if connect:
            connect_all(state)
        return state

    yield build
    for state in states:
        disconnect_all(state)


@pytest.fixture
def echo_log():
    """Records what connectors print through pyinfra's output hooks (the
    CLI installs ``click.echo``/``click.style`` there). Red text is shown
    as ``<red>...</red>`` so styling can be checked too."""
    from pyinfra.api import output

    records: list[tuple[str, bool]] = []

    def echo(message=None, **kwargs):
        records.append((str(message), bool(kwargs.get("err"))))

    def style(text, *args, **kwargs):
        fg = args[0] if args else kwargs.get("fg")
        return f"<{fg}>{text}</{fg}>" if fg else text

    output.set_echo(echo)
    output.set_formatter(style)
    yield records
    output.set_echo(output._default_echo)
    output.set_formatter(output._default_format_text)


# ------------------------------------------------------------ pyinfra CLI


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)

    def op_results(self) -> dict[str, dict]:
        """``--json`` results by operation name."""
        return {op["name"]: op for op in self.json["results"]["operations"]}


def run_pyinfra(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None, timeout: float = 120) -> CliRun:
    """Runs the real ``pyinfra`` CLI (gevent monkey-patched, as users run it)."""
    # The pyinfra of this interpreter (a `pyinfra` on PATH may belong to
    # another Python that lacks the connector).
    cmd = [sys.executable, "-m", "pyinfra", *args]
    started = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=cwd or _CLI_CWD,
        capture_output=True,
        text=True,
        env={**os.environ, "LXD_CONF": LXD_CONF, "PYINFRA_PROGRESS": "off", **(env or {})},
        timeout=timeout,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@pytest.fixture
def pyinfra_cli():
    return run_pyinfra


def hosts_arg(*instances: str) -> str:
    return ",".join(f"@lxd_wasm/{i}" for i in instances)
