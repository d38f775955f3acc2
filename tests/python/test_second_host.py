"""The connector component in a second host that is not ours.

The host here is wasmtime's Python binding (PyPI ``wasmtime``): the built
``connector.wasm`` (written out by ``lxd-connector component``), WASI 0.2
and wasmtime's default ``wasi:http`` from the binding, and the contract's
host imports (``lxd-remotes``, ``live-output``) written in Python below.
Nothing of our host (``host/src``) takes part.

What it shows: the component needs nothing but its documented world to
instantiate, parse inventory names and run its checks; and a host that
gives it the default ``wasi:http`` (no client identity, no pinned
certificate, no list of allowed authorities) gets typed, readable errors,
never a trap, when the component tries to reach the real test LXD. The
credentials are not something the component could supply: only a host's
``wasi:http`` handler can present them, which is why they live there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:
    import wasmtime
    from wasmtime.component import Component, Linker, Record, ResourceAny, Variant
except ImportError as e:  # pragma: no cover - a setup problem, said plainly
    raise ImportError(f"{e}; install the test requirements: pip install -r tests/python/requirements.txt") from e

REPO = Path(__file__).resolve().parents[2]
# The real test LXD of tests/lxd-up.sh.
LXD_ADDR = urlsplit(os.environ.get("LXD_TEST_URL") or "https://127.0.0.1:8443").netloc
CONNECTOR = "orchestrator:connector/connector@0.1.0"
# The world in wit/lxd.wit, as the second host sees the component.
IMPORTS = {
    "orchestrator:connector/live-output@0.1.0",
    "orchestrator:connector/lxd-remotes@0.1.0",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
}


def lxd_connector_binary() -> str:
    """The CLI that tests/run.sh built (``cargo test --release``)."""
    if os.environ.get("LXD_CONNECTOR_BIN"):
        return os.environ["LXD_CONNECTOR_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    built = target / "release" / "lxd-connector"
    if built.is_file():
        return str(built)
    on_path = shutil.which("lxd-connector")
    if on_path:
        return on_path
    pytest.fail(f"no lxd-connector at {built} or on PATH: run `cargo build --release` (or set LXD_CONNECTOR_BIN)")


@pytest.fixture(scope="module")
def component_file(tmp_path_factory) -> Path:
    """connector.wasm, as a user of another host gets it."""
    path = tmp_path_factory.mktemp("second-host") / "connector.wasm"
    proc = subprocess.run([lxd_connector_binary(), "component", "-o", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert path.read_bytes()[:8] == b"\0asm\x0d\x00\x01\x00", "not a component"
    return path


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True  # a CPU budget, as a host should set one
    return wasmtime.Engine(config)


@pytest.fixture(scope="module")
def component(engine, component_file) -> Component:
    return Component.from_file(engine, component_file)


def remote(name: str, authority: str, project: str = "default") -> Record:
    """An ``lxd-remotes.remote`` record."""
    r = Record()
    r.name, r.authority, r.project = name, authority, project
    return r


def run_options(**given) -> Record:
    """A ``run-options`` record: the defaults, with ``given`` (``_`` for ``-``)."""
    r = Record()
    fields = {"stdin": None, "timeout-ms": None, "env": [], "cwd": None, "user": None, "group": None, "live": False}
    for key, value in {**fields, **{k.replace("_", "-"): v for k, v in given.items()}}.items():
        setattr(r, key, value)
    return r


class SecondHost:
    """One instance of the component in a store of its own.

    ``answer(name)`` is what ``lxd-remotes.resolve`` returns: a ``remote``
    record or a ``resolve-error`` Variant. Every call the component makes
    into the host is recorded in ``calls``.
    """

    def __init__(self, engine, component, answer):
        self.calls: list[tuple] = []
        self.memo: dict[tuple[str, str], str] = {}
        linker = Linker(engine)
        linker.add_wasip2()  # WASI 0.2 as wasmtime provides it
        linker.add_wasi_http()  # wasmtime's default wasi:http: no identity, no pin
        with linker.root() as root:
            with root.add_instance("orchestrator:connector/lxd-remotes@0.1.0") as remotes:
                remotes.add_func("resolve", self._resolve(answer))
                remotes.add_func("remember", self._remember)
                remotes.add_func("recall", self._recall)
            with root.add_instance("orchestrator:connector/live-output@0.1.0") as live:
                live.add_func("chunk", lambda store, stream, data: self.calls.append(("chunk", stream, bytes(data))))
        self.store = wasmtime.Store(engine)
        # No environment, no preopened folders, no standard streams.
        self.store.set_wasi(wasmtime.WasiConfig())
        self.store.set_wasi_http()
        self.store.set_limits(memory_size=256 << 20)
        self.store.set_fuel(20_000_000_000)
        self.instance = linker.instantiate(self.store, component)
        self.connector = self.instance.get_export_index(self.store, CONNECTOR)
        assert self.connector is not None, f"the component exports no {CONNECTOR}"

    def _resolve(self, answer):
        def resolve(store, name):
            self.calls.append(("resolve", name))
            return answer(name)

        return resolve

    def _remember(self, store, remote_name, key, value):
        self.calls.append(("remember", remote_name, key))
        self.memo[(remote_name, key)] = value

    def _recall(self, store, remote_name, key):
        self.calls.append(("recall", remote_name, key))
        return self.memo.get((remote_name, key))

    def call(self, name: str, *args):
        """Calls an export of the connector interface; a trap raises."""
        index = self.instance.get_export_index(self.store, name, self.connector)
        assert index is not None, f"the connector exports no {name}"
        func = self.instance.get_func(self.store, index)
        result = func(self.store, *args)
        func.post_return(self.store)
        return result


def connector_error(value, case: str) -> str:
    """The message of an ``error`` Variant of the given case."""
    assert isinstance(value, Variant), f"expected error::{case}, got {value!r}"
    assert value.tag == case, f"expected error::{case}, got error::{value.tag}: {value.payload}"
    assert isinstance(value.payload, str) and value.payload.strip(), value
    return value.payload


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable(name):
    raise AssertionError(f"parse-name asked the host to resolve {name!r}")


def test_the_second_host_sees_exactly_the_documented_imports_and_export(engine, component):
    ty = component.type
    assert set(ty.imports(engine)) == IMPORTS
    assert set(ty.exports(engine)) == {CONNECTOR}


def test_parse_name_gives_typed_targets_and_inventory_errors_without_asking_the_host(engine, component):
    host = SecondHost(engine, component, unreachable)
    target = host.call("parse-name", "testlxd:c1")
    assert isinstance(target, Record)
    assert getattr(target, "host-name") == "testlxd:c1"
    assert target.data == [("instance", "c1"), ("remote", "testlxd")]
    target = host.call("parse-name", "web-1")
    assert getattr(target, "host-name") == "web-1"
    assert target.data == [("instance", "web-1")]
    for name, says in [
        ("c 1", "contains ' '"),
        (":c1", "remote name before ':' is empty"),
        ("", "the instance name is empty"),
        ("prod:1abc", "does not start with a letter"),
        ("prod:c1:x", "contains ':'"),
        ("c1%00junk", "contains '%'"),
    ]:
        message = connector_error(host.call("parse-name", name), "inventory")
        assert says in message, (name, message)
    assert host.calls == []


def test_connect_with_the_default_wasi_http_fails_typed_at_the_real_lxd(engine, component):
    # The real LXD answers there: the connection is made, and it is the
    # missing pin (and identity) that stops the component, not the network.
    host_name, port = LXD_ADDR.rsplit(":", 1)
    socket.create_connection((host_name, int(port)), timeout=5).close()
    host = SecondHost(engine, component, lambda name: remote(name or "default-remote", LXD_ADDR))
    target = host.call("parse-name", "second:c1")
    message = connector_error(host.call("connect", target), "connect")
    assert message.startswith("remote 'second': ") and "certificate" in message, message
    # The component asked for the remote and its remembered facts, and
    # nothing else of the host; it remembered nothing (no check passed).
    assert host.calls == [("resolve", "second"), ("recall", "second", "server-info")]
    # No trap: the same instance goes on.
    assert host.call("parse-name", "c2").data == [("instance", "c2")]


def test_an_authority_where_nothing_listens_is_a_typed_connect_error(engine, component):
    authority = f"127.0.0.1:{free_port()}"
    host = SecondHost(engine, component, lambda name: remote(name or "dflt", authority))
    message = connector_error(host.call("connect", host.call("parse-name", "c1")), "connect")
    assert message == "remote 'dflt': connection refused", message
    assert host.calls[0] == ("resolve", None)


@pytest.mark.parametrize(
    "case, becomes",
    [("unknown", "not-found"), ("unsupported", "unsupported"), ("config", "connect")],
)
def test_resolve_errors_become_the_documented_connector_errors(engine, component, case, becomes):
    said = f"the second host says: {case} (remote 'x')"
    host = SecondHost(engine, component, lambda name: Variant(case, said))
    target = host.call("parse-name", "x:c1")
    for call in ["connect", "connect-deferred"]:
        assert connector_error(host.call(call, target), becomes) == said
    assert host.calls == [("resolve", "x"), ("resolve", "x")]


def test_a_deferred_session_is_a_resource_whose_calls_fail_typed(engine, component):
    host = SecondHost(engine, component, lambda name: remote(name, LXD_ADDR))
    session = host.call("connect-deferred", host.call("parse-name", "second:c1"))
    assert isinstance(session, ResourceAny) and session.owned
    assert host.calls == [("resolve", "second")], "connect-deferred sent something"
    # Rejected before anything is sent.
    message = connector_error(host.call("[method]session.run", session, "true", run_options(timeout_ms=0)), "invalid-input")
    assert "time limit of 0 ms" in message
    message = connector_error(host.call("[method]session.get-file", session, "etc/hostname"), "invalid-input")
    assert "not absolute" in message
    # The checks ride along with the first run, and fail as connect's would.
    message = connector_error(host.call("[method]session.run", session, "echo hi", run_options(live=True)), "connect")
    assert "certificate" in message
    facts = host.call("[method]session.describe", session)
    assert [k for k, _ in facts] == [
        "remote", "server", "server version", "api version", "auth", "project", "instance", "type", "status", "error",
    ]
    assert dict(facts)["remote"] == "second" and dict(facts)["instance"] == "c1" and "certificate" in dict(facts)["error"]
    assert not any(c[0] in ("remember", "chunk") for c in host.calls), host.calls
    session.drop(host.store)
