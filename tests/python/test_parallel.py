"""Hosts run in parallel, and the component is compiled once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import DEPLOYS, P_HOSTS, hosts_arg, run_pyinfra

ALL8 = hosts_arg(*P_HOSTS)


def sleep_run(seconds: int):
    run = run_pyinfra("-y", "--json", "--data", f"sleep_seconds={seconds}", ALL8, str(DEPLOYS / "sleep_deploy.py"))
    assert run.returncode == 0, run.stderr
    (op,) = run.json["results"]["operations"]
    assert sorted(op["success"]) == sorted(f"@lxd_wasm/{p}" for p in P_HOSTS)
    return run.seconds


def test_eight_hosts_sleeping_one_second_finish_together_through_the_cli():
    baseline = sleep_run(0)  # pyinfra startup, connects, facts, one op
    slept = sleep_run(1)
    # Serially that is >= 8 s more than the baseline; in parallel about 1 s.
    assert slept < 4, (baseline, slept)
    assert slept - baseline < 3, (baseline, slept)


def test_eight_hosts_run_one_second_commands_concurrently_in_process(make_state):
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.operations import server

    state = make_state(*(f"@lxd_wasm/{p}" for p in P_HOSTS))
    assert len(state.active_hosts) == 8
    add_op(state, server.shell, "sleep 1")
    started = time.monotonic()
    run_ops(state)
    elapsed = time.monotonic() - started
    assert all(state.get_results_for_host(h).success_ops == 1 for h in state.inventory), [
        (h.name, state.get_results_for_host(h)) for h in state.inventory
    ]
    assert elapsed < 3, elapsed  # 8 s if the hosts ran one after another


COUNT_SCRIPT = """
import json, sys
from gevent import monkey; monkey.patch_all()
from lxd_wasm_connector import _native
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
counts = {"imported": _native.runtimes_loaded()}
state = State(Inventory((sys.argv[1:], {})), Config())
counts["inventory"] = _native.runtimes_loaded()
connect_all(state)
counts["connected"] = _native.runtimes_loaded()
counts["active"] = len(state.active_hosts)
for host in state.inventory:
    assert host.run_shell_command("true")[0]
counts["ran"] = _native.runtimes_loaded()
disconnect_all(state)
json.dump(counts, sys.stdout)
"""


def test_component_is_compiled_once_for_eight_hosts_in_one_process():
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_SCRIPT, *(f"@lxd_wasm/{p}" for p in P_HOSTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts == {"imported": 0, "inventory": 1, "connected": 1, "active": 8, "ran": 1}


def test_component_is_compiled_once_under_the_cli(tmp_path):
    run = run_pyinfra(
        "-y", "--json", "--data", f"test_outdir={tmp_path}", ALL8, str(DEPLOYS / "runtimes_deploy.py")
    )
    assert run.returncode == 0, run.stderr
    recorded = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert recorded == {f"{p}.{stage}": "1" for p in P_HOSTS for stage in ("prepare", "run")}
