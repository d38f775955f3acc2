"""Whole deploys through the real ``pyinfra`` CLI (``-y --json``)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from conftest import DEPLOYS, hosts_arg, lxc_exec, remote_sha1, run_pyinfra

DEPLOY_HOSTS = ["p1", "p2", "p3", "p4"]
ALWAYS_CHANGES = {"Record the hostname"}  # server.shell: pyinfra cannot know


def test_deploy_on_four_containers_succeeds_and_a_second_run_changes_only_the_shell_op(remote_dir, tmp_path):
    remote_dir.on(*DEPLOY_HOSTS)
    args = (
        "-y",
        "--json",
        "--data",
        f"test_base={remote_dir}",
        "--data",
        f"test_outdir={tmp_path}",
        hosts_arg(*DEPLOY_HOSTS),
        str(DEPLOYS / "full_deploy.py"),
    )
    everyone = sorted(f"@lxd_wasm/{h}" for h in DEPLOY_HOSTS)

    first = run_pyinfra(*args)
    assert first.returncode == 0, first.stderr
    assert first.json["results"]["failed_hosts"] == []
    ops = first.op_results()
    assert list(ops) == [
        "Make the test folder",
        "Upload the payload",
        "Ensure a managed line",
        "Record the hostname",
        "Download the payload",
    ]
    for name, op in ops.items():
        assert sorted(op["success"]) == everyone, (name, op)  # all changed something
        assert op["error"] == [] and op["no_change"] == [], (name, op)

    second = run_pyinfra(*args)
    assert second.returncode == 0, second.stderr
    for name, op in second.op_results().items():
        assert op["error"] == [], (name, op)
        if name in ALWAYS_CHANGES:
            assert sorted(op["success"]) == everyone and op["no_change"] == [], (name, op)
        else:
            assert sorted(op["no_change"]) == everyone and op["success"] == [], (name, op)
    assert second.json["results"]["totals"] == {
        "hosts": 5 * len(DEPLOY_HOSTS),
        "success": len(DEPLOY_HOSTS),
        "error": 0,
        "no_change": 4 * len(DEPLOY_HOSTS),
    }

    # What the deploy did, checked with lxc and on the local disk.
    payload = (DEPLOYS / "payload.txt").read_bytes()
    for instance in DEPLOY_HOSTS:
        assert remote_sha1(instance, f"{remote_dir}/payload.txt") == hashlib.sha1(payload).hexdigest()
        stat = lxc_exec(instance, f"stat -c '%a %U' '{remote_dir}' '{remote_dir}/payload.txt'").stdout.decode()
        assert stat.split("\n")[:2] == ["755 root", "640 root"]
        assert lxc_exec(instance, f"cat '{remote_dir}/settings.conf'").stdout == b"managed=yes\n"
        assert lxc_exec(instance, f"cat '{remote_dir}/hostname'").stdout == f"{instance}\n".encode()
        assert (tmp_path / f"{instance}.payload.txt").read_bytes() == payload

        facts = json.loads((tmp_path / f"{instance}.facts.json").read_text())
        assert facts["os"] == "Linux"
        size, mode, user = lxc_exec(instance, "stat -c '%s %a %U' /etc/passwd").stdout.decode().split()
        assert facts["passwd"]["size"] == int(size)
        assert facts["passwd"]["mode"] == int(mode)
        assert facts["passwd"]["user"] == user


@pytest.fixture(scope="module")
def broken_run():
    """One run of a deploy where p3's upload fails mid-run, p4's command
    times out, stopped1 cannot connect, and p1/p2 are healthy."""
    base = f"/tmp/pyinfra-test-broken-{uuid.uuid4().hex[:10]}"
    run = run_pyinfra(
        "-y",
        "--json",
        "--data",
        f"test_base={base}",
        str(DEPLOYS / "failing_inventory.py"),
        str(DEPLOYS / "failing_deploy.py"),
    )
    done = {i: lxc_exec(i, f"test -e '{base}/done'", check=False).returncode == 0 for i in ("p1", "p2", "p3", "p4")}
    yield run, done
    for instance in ("p1", "p2", "p3", "p4"):
        lxc_exec(instance, f"rm -rf '{base}'", check=False)


def test_broken_hosts_fail_alone_and_the_healthy_ones_finish_every_operation(broken_run):
    run, done = broken_run
    assert run.returncode == 1, run.stderr  # some hosts failed
    results = run.json["results"]
    assert sorted(results["failed_hosts"]) == ["@lxd_wasm/p3", "@lxd_wasm/p4", "@lxd_wasm/stopped1"]
    ops = run.op_results()
    assert sorted(ops["Create the test folder"]["success"]) == ["@lxd_wasm/p1", "@lxd_wasm/p2", "@lxd_wasm/p3", "@lxd_wasm/p4"]
    assert ops["Upload into a missing folder"]["error"] == ["@lxd_wasm/p3"]
    assert ops["Sleep past the timeout"]["error"] == ["@lxd_wasm/p4"]
    assert sorted(ops["Mark done"]["success"]) == ["@lxd_wasm/p1", "@lxd_wasm/p2"]
    assert done == {"p1": True, "p2": True, "p3": False, "p4": False}


def test_timed_out_host_is_failed_on_time_not_after_its_command_ends(broken_run):
    run, _ = broken_run
    assert "Command timed out after 1s" in run.stderr
    assert run.seconds < 15, run.seconds  # the timed-out command sleeps 30 s


def test_expected_per_host_failures_print_no_python_tracebacks(broken_run):
    run, _ = broken_run
    assert "parent folder does not exist" in run.stderr  # the upload's error is shown...
    assert "Stopped, not Running" in run.stderr
    assert "Traceback" not in run.stderr  # ...without a traceback per failure
