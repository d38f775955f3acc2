"""``@incus_wasm``: the same connector against a real Incus 6 (brought up by
``tests/incus-up.sh`` beside the test LXD), reading the incus client's
config from ``$INCUS_CONF``. Independent checks go through the ``incus``
client on the server's socket."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import run_pyinfra

INCUS_CONF = os.environ.get("INCUS_TEST_CONF") or "/var/lib/lxd-connector-test/incus-conf"
HOST = "@incus_wasm/testincus:c1"


@pytest.fixture(autouse=True)
def incus_conf(monkeypatch):
    if not Path(INCUS_CONF, "config.yml").is_file():
        pytest.fail(f"no incus client config at {INCUS_CONF}; run tests/incus-up.sh first")
    monkeypatch.setenv("INCUS_CONF", INCUS_CONF)


def server_incus(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "INCUS_CONF"}
    return subprocess.run(["incus", "--force-local", *args], check=True, capture_output=True, text=True, env=env).stdout


def test_incus_wasm_runs_commands_and_moves_files_on_incus(make_state):
    state = make_state(HOST)
    host = state.inventory.get_host(HOST)
    ok, out = host.run_shell_command("cat /etc/test-server; echo err >&2")
    assert ok and out.stdout_lines == ["incus"] and out.stderr_lines == ["err"]
    ok, out = host.run_shell_command("exit 3")
    assert not ok
    path = f"/tmp/pyinfra-incus-{uuid.uuid4().hex[:10]}/sub/f.txt"
    data = bytes(range(256)) * 100
    assert host.run_shell_command(f"mkdir -p {Path(path).parent}")[0]
    host.put_file(io.BytesIO(data), path)
    try:
        assert server_incus("exec", "c1", "--", "sha256sum", path).split()[0] == hashlib.sha256(data).hexdigest()
        back = io.BytesIO()
        host.get_file(path, back)
        assert back.getvalue() == data
    finally:
        server_incus("exec", "c1", "--", "rm", "-rf", str(Path(path).parent.parent))


def test_incus_wasm_is_a_pyinfra_connector_the_cli_finds():
    result = run_pyinfra(HOST, "exec", "--", "cat", "/etc/test-server", env={"INCUS_CONF": INCUS_CONF})
    assert result.returncode == 0, result.stderr
    # The command's output line, printed by the connector (the host name
    # alone holds "incus" too).
    assert f"[{HOST}] incus\n" in result.stdout + result.stderr, result.stdout + result.stderr


def test_incus_wasm_reads_incus_config_not_lxcs(make_state):
    # testincus exists only in the incus config; testlxd only in lxc's.
    from pyinfra.api.exceptions import ConnectError

    state = make_state("@incus_wasm/testlxd:c1", connect=False)
    host = state.inventory.get_host("@incus_wasm/testlxd:c1")
    with pytest.raises(ConnectError, match=r'no remote named "testlxd".*`incus remote add testlxd ADDRESS`'):
        host.connector.connect()
