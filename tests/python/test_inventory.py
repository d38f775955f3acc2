"""Inventory names and host data: which LXD instance each pyinfra host is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DEPLOYS, LXD_CONF, hosts_arg, run_pyinfra
from pyinfra.api.exceptions import InventoryError


def hostname(host) -> str:
    ok, out = host.run_shell_command("uname -n")
    assert ok, out.output
    return out.stdout


def test_qualified_and_default_remote_names_reach_the_named_instances(make_state):
    state = make_state("@lxd_wasm/testlxd:p1", "@lxd_wasm/p2")
    assert {h.name for h in state.active_hosts} == {"@lxd_wasm/testlxd:p1", "@lxd_wasm/p2"}
    assert hostname(state.inventory.get_host("@lxd_wasm/testlxd:p1")) == "p1"
    assert hostname(state.inventory.get_host("@lxd_wasm/p2")) == "p2"


def test_host_data_overrides_instance_remote_and_project_from_an_inventory_file():
    # Each host's name points at one container; its host data at another.
    # The hostname fact (uname -n, the container name) says which one ran.
    run = run_pyinfra("--json", str(DEPLOYS / "inventory_overrides.py"), "fact", "server.Hostname")
    assert run.returncode == 0, run.stderr
    assert run.json["server.Hostname"] == {
        "@lxd_wasm/p1": "p2",  # lxd_instance
        "@lxd_wasm/testlxd:p5": "p6",  # lxd_container (older spelling)
        "@lxd_wasm/p7": "p8",  # lxd_instance wins over lxd_container
        "@lxd_wasm/nosuchremote:p3": "p3",  # lxd_remote replaces REMOTE:
        "@lxd_wasm/p4": "p4",  # lxd_project=default
    }


def test_unknown_project_in_host_data_fails_that_host_only(make_state):
    state = make_state("@lxd_wasm/p1", ("@lxd_wasm/p2", {"lxd_project": "no-such-project"}))
    assert {h.name for h in state.active_hosts} == {"@lxd_wasm/p1"}
    assert {h.name for h in state.failed_hosts} == {"@lxd_wasm/p2"}


def conf_with_default(tmp_path, default: str) -> Path:
    """A copy of the trusted client config whose default remote is `default`."""
    conf = tmp_path / "conf"
    shutil.copytree(LXD_CONF, conf)
    config = conf / "config.yml"
    text = config.read_text()
    assert "default-remote: testlxd" in text
    config.write_text(text.replace("default-remote: testlxd", f"default-remote: {default}"))
    return conf


@pytest.fixture
def unix_default_conf(tmp_path) -> Path:
    """Default remote ``local``: LXD's unix socket on this machine."""
    return conf_with_default(tmp_path, "local")


@pytest.fixture
def image_server_default_conf(tmp_path) -> Path:
    """Default remote ``images``: a simplestreams image server, no LXD API."""
    return conf_with_default(tmp_path, "images")


def test_bare_instance_with_the_unix_socket_as_default_remote_reaches_the_instance_over_it(
    unix_default_conf, monkeypatch, make_state
):
    monkeypatch.setenv("LXD_CONF", str(unix_default_conf))
    state = make_state("@lxd_wasm/p1")
    assert hostname(state.inventory.get_host("@lxd_wasm/p1")) == "p1"


def test_bare_instance_with_an_image_server_default_remote_raises_inventory_error_naming_qualified_form(
    image_server_default_conf, monkeypatch, make_state
):
    monkeypatch.setenv("LXD_CONF", str(image_server_default_conf))
    with pytest.raises(InventoryError) as info:
        make_state("@lxd_wasm/p1", connect=False)
    message = str(info.value)
    assert "@lxd_wasm/REMOTE:p1" in message
    assert "simplestreams" in message


def test_cli_reports_the_inventory_error_for_an_image_server_default_remote(image_server_default_conf):
    run = run_pyinfra("-y", "@lxd_wasm/p1", "exec", "--", "true", env={"LXD_CONF": str(image_server_default_conf)})
    assert run.returncode != 0
    assert "@lxd_wasm/REMOTE:p1" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_cli_runs_on_the_unix_socket_default_remote_and_a_qualified_https_name_beside_it(unix_default_conf):
    run = run_pyinfra(
        "-y",
        "--json",
        "@lxd_wasm/p1,@lxd_wasm/testlxd:p2",
        "fact",
        "server.Hostname",
        env={"LXD_CONF": str(unix_default_conf)},
    )
    assert run.returncode == 0, run.stderr
    assert run.json["server.Hostname"] == {"@lxd_wasm/p1": "p1", "@lxd_wasm/testlxd:p2": "p2"}


def test_malformed_lxc_config_is_an_inventory_error_not_a_crash(tmp_path, monkeypatch, make_state):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yml").write_text("default-remote: [\n")
    monkeypatch.setenv("LXD_CONF", str(conf))
    with pytest.raises(InventoryError, match=r"@lxd_wasm/REMOTE:p1"):
        make_state("@lxd_wasm/p1", connect=False)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("@lxd_wasm", "@lxd_wasm/REMOTE:INSTANCE"),
        ("@lxd_wasm/testlxd:", "instance name is empty"),
        ("@lxd_wasm/bad_name!", "instance names are"),
    ],
)
def test_invalid_inventory_names_raise_inventory_error(make_state, name, expected):
    with pytest.raises(InventoryError, match=expected):
        make_state(name, connect=False)


def test_cli_with_a_stopped_instance_fails_that_host_and_runs_the_others():
    run = run_pyinfra("-y", "--json", hosts_arg("p1", "stopped1"), "exec", "--", "uname -n")
    assert run.returncode == 1
    assert run.json["results"]["failed_hosts"] == ["@lxd_wasm/stopped1"]
    (op,) = run.json["results"]["operations"]
    assert op["success"] == ["@lxd_wasm/p1"]
    assert "stopped1" in run.stderr and "Stopped" in run.stderr


def test_lxd_project_host_data_reaches_the_instance_of_that_name_in_that_project(make_state):
    # tests/lxd-up.sh gives the project connector-p2 a c1 of its own; each
    # c1 gets a marker file naming its project, written from the server.
    import os
    import subprocess

    marker = f"/tmp/which-project-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k != "LXD_CONF"}
    for project in ("default", "connector-p2"):
        subprocess.run(
            ["lxc", "--force-local", "exec", "--project", project, "c1", "--", "sh", "-c", f"echo {project} > {marker}"],
            check=True,
            env=env,
        )
    try:
        state = make_state(("@lxd_wasm/c1", {"lxd_project": "connector-p2"}))
        ok, out = state.inventory.get_host("@lxd_wasm/c1").run_shell_command(f"cat {marker}")
        assert ok, out.output
        assert out.stdout == "connector-p2"
    finally:
        for project in ("default", "connector-p2"):
            subprocess.run(["lxc", "--force-local", "exec", "--project", project, "c1", "--", "rm", "-f", marker], env=env)
