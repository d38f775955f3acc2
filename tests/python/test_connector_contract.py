"""The pyinfra connector contract for ``run_shell_command`` and errors.

Where pyinfra's own ``@local`` connector is a fair reference (same shell
rendering, same output format as ``@ssh``), the same call goes to both and
the results are compared.
"""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from pyinfra.api import StringCommand

LXD = "@lxd_wasm/p1"
LOCAL = "@local"


@pytest.fixture
def hosts(make_state):
    state = make_state(LXD, "@lxd_wasm/p2", LOCAL)
    assert {h.name for h in state.active_hosts} == {LXD, "@lxd_wasm/p2", LOCAL}
    return state.inventory.get_host(LXD), state.inventory.get_host(LOCAL)


def run(host, command, **kwargs):
    return host.run_shell_command(command, **kwargs)


def run_local_reference(local, command, **kwargs):
    """The @local reference run. pyinfra's @local writes `_stdin` after the
    process started: a command that never reads it may already have exited,
    and the write then fails with BrokenPipeError (a race in the reference,
    not in the connector under test), so such a run is tried again."""
    for attempt in range(5):
        try:
            return run(local, command, **kwargs)
        except BrokenPipeError:
            if attempt == 4:
                raise


TRICKY_COMMANDS = [
    """printf '%s|' "a b" 'c"d' '$HOME' "x\\\\y" 'it'"'"'s' '*' ; printf '\\n'""",
    "for i in 1 2 3; do printf 'n=%s,' \"$i\"; done; echo",
    "echo $((6 * 7)) \"$(printf '%s' 'nested quote')\"",
    "set -- a 'b c'; echo $# \"$2\"",
    "echo one\necho two",
    StringCommand("printf", "%s\\n", "'single' \"double\" $unset_var `echo tick`"),
]


@pytest.mark.parametrize("command", TRICKY_COMMANDS, ids=range(len(TRICKY_COMMANDS)))
@pytest.mark.parametrize("with_stdin", [False, True], ids=["no-stdin", "stdin"])
def test_rendered_command_is_interpreted_exactly_once_like_local(hosts, command, with_stdin):
    lxd, local = hosts
    kwargs = {"_stdin": "ignored"} if with_stdin else {}
    ok_lxd, out_lxd = run(lxd, command, **kwargs)
    ok_local, out_local = run_local_reference(local, command, **kwargs)
    assert (ok_lxd, out_lxd.stdout_lines, out_lxd.stderr_lines) == (ok_local, out_local.stdout_lines, out_local.stderr_lines)
    assert out_lxd.stdout  # the command did produce something


def test_env_chdir_and_raw_shell_arguments_render_like_local(hosts):
    lxd, local = hosts
    cases = [
        ("printf '%s\\n' \"$FOO\" \"$BAR\"", {"_env": {"FOO": "it's $x `y`", "BAR": "a b"}}),
        ("pwd", {"_chdir": "/tmp"}),
        ("echo a; echo 'b c' | tr ' ' _", {"_shell_executable": None}),
    ]
    for command, kwargs in cases:
        assert run(lxd, command, **kwargs)[1].stdout_lines == run(local, command, **kwargs)[1].stdout_lines, kwargs


def test_su_user_rendering_runs_the_command_as_that_user(hosts):
    lxd, _ = hosts
    ok, out = run(lxd, "id -u; echo \"$HOME\"", _su_user="tester")
    assert ok, out.output
    assert out.stdout_lines == ["1000", "/home/tester"]


@pytest.mark.parametrize(
    "exit_code, codes, expected",
    [(0, None, True), (1, None, False), (3, [3], True), (0, [3], False), (4, [0, 4], True), (5, [0, 4], False)],
)
def test_success_exit_codes_decide_success(hosts, exit_code, codes, expected):
    lxd, _ = hosts
    kwargs = {"_success_exit_codes": codes} if codes is not None else {}
    ok, out = run(lxd, f"echo out; exit {exit_code}", **kwargs)
    assert ok is expected
    assert out.stdout_lines == ["out"]


@pytest.mark.parametrize(
    "stdin",
    ["one line", ["a", "b\n", "", "é ü"], io.StringIO("x\ny"), "already\n"],
    ids=["str", "list", "file-object", "str-with-newline"],
)
def test_stdin_reaches_the_command_byte_for_byte_like_local(hosts, stdin):
    lxd, local = hosts
    digests = []
    for host in (lxd, local):
        if isinstance(stdin, io.StringIO):
            stdin.seek(0)
        ok, out = run(host, "sha1sum; wc -c", _stdin=stdin)
        assert ok, out.output
        digests.append(out.stdout_lines)
    assert digests[0][0].split()[0] == digests[1][0].split()[0]
    assert digests[0][1].strip() == digests[1][1].strip()


def test_stdin_is_exact_bytes_of_each_line_plus_newline(hosts):
    lxd, _ = hosts
    ok, out = run(lxd, "sha1sum", _stdin=["first", "second"])
    assert ok
    assert out.stdout.split()[0] == hashlib.sha1(b"first\nsecond\n").hexdigest()


def test_no_stdin_means_an_empty_stdin_not_a_hang(hosts):
    lxd, _ = hosts
    ok, out = run(lxd, "wc -c", _timeout=20)
    assert ok and out.stdout.strip() == "0"


def test_timeout_raises_timeout_error_on_time_and_the_host_stays_usable(hosts):
    lxd, _ = hosts
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(lxd, "sleep 10", _timeout=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3, elapsed
    ok, out = run(lxd, "echo still here")
    assert ok and out.stdout == "still here"


def test_command_finishing_within_its_timeout_succeeds(hosts):
    lxd, _ = hosts
    ok, out = run(lxd, "sleep 0.2; echo done", _timeout=10)
    assert ok and out.stdout == "done"


def test_get_pty_raises_a_clear_not_implemented_error(hosts):
    lxd, _ = hosts
    with pytest.raises(NotImplementedError, match="PTY"):
        run(lxd, "true", _get_pty=True)


def test_output_lines_split_on_newline_only_like_local(hosts):
    lxd, local = hosts
    command = "printf 'a\\r\\nb\\rc\\n\\nlast'; printf 'e1\\r\\ne2\\n' >&2"
    ok, out = run(lxd, command)
    assert ok
    assert out.stdout_lines == ["a\r", "b\rc", "", "last"]
    assert out.stderr_lines == ["e1\r", "e2"]
    _, ref = run(local, command)
    assert (ref.stdout_lines, ref.stderr_lines) == (out.stdout_lines, out.stderr_lines)


def test_invalid_utf8_output_is_decoded_with_replacement_not_a_crash(hosts):
    lxd, _ = hosts
    ok, out = run(lxd, "printf 'ok \\377\\376 end\\n'; printf '\\303(\\n' >&2")
    assert ok
    assert out.stdout_lines == ["ok \ufffd\ufffd end"]
    assert out.stderr_lines == ["\ufffd("]


def _strip(records, host):
    """Printed lines without the host's prefix (which must be there)."""
    lines = []
    for message, err in records:
        assert err, f"printed to stdout, not stderr: {message!r}"
        assert message.startswith(host.print_prefix), (message, host.print_prefix)
        lines.append(message[len(host.print_prefix) :])
    return lines


def test_print_input_and_output_match_local_and_ssh_format(hosts, echo_log):
    lxd, local = hosts
    printed = {}
    for host in (lxd, local):
        for command in ("echo out1; echo out2", "echo err1 >&2"):
            echo_log.clear()
            run(host, command, print_input=True, print_output=True, _env={"K": "v"})
            printed[host.name, command] = _strip(echo_log, host)
    assert printed[LXD, "echo out1; echo out2"] == printed[LOCAL, "echo out1; echo out2"]
    assert printed[LXD, "echo err1 >&2"] == printed[LOCAL, "echo err1 >&2"]
    assert printed[LXD, "echo out1; echo out2"] == [
        ">>> sh -c 'export K=v && echo out1; echo out2'",
        "out1",
        "out2",
    ]
    assert printed[LXD, "echo err1 >&2"] == [">>> sh -c 'export K=v && echo err1 >&2'", "<red>err1</red>"]


def test_print_output_shows_each_line_while_the_command_still_runs(hosts):
    from pyinfra.api import output

    lxd, _ = hosts
    start = time.monotonic()
    printed: list[tuple[float, str]] = []
    output.set_echo(lambda message=None, **kwargs: printed.append((time.monotonic() - start, str(message))))
    def style(text, *args, **kwargs):
        fg = args[0] if args else kwargs.get("fg")
        return f"<{fg}>{text}</{fg}>" if fg else text

    output.set_formatter(style)
    try:
        ok, out = run(lxd, "echo one; sleep 2.5; echo two >&2; printf three", print_output=True)
    finally:
        output.set_echo(output._default_echo)
        output.set_formatter(output._default_format_text)
    took = time.monotonic() - start
    assert ok and out.stdout_lines == ["one", "three"] and out.stderr_lines == ["two"]
    prefix = lxd.print_prefix
    assert [m for _, m in printed] == [f"{prefix}one", f"{prefix}<red>two</red>", f"{prefix}three"]
    first = printed[0][0]
    assert took >= 2.5 and first < 2.0, f"the first line came at {first:.2f} s of {took:.2f} s: not live"


def test_nothing_is_printed_without_print_flags(hosts, echo_log):
    lxd, _ = hosts
    run(lxd, "echo quiet; echo loud >&2")
    assert echo_log == []


def test_failed_file_transfers_raise_oserror_so_pyinfra_fails_only_that_host(hosts):
    lxd, _ = hosts
    with pytest.raises(OSError, match="parent folder does not exist"):
        lxd.put_file(io.BytesIO(b"x"), "/nonexistent-folder/sub/file")
    with pytest.raises(OSError, match="not found"):
        lxd.get_file("/nonexistent-folder/file", io.BytesIO())


def test_calls_after_disconnect_raise_oserror(make_state):
    state = make_state("@lxd_wasm/p3")
    host = state.inventory.get_host("@lxd_wasm/p3")
    host.disconnect()
    with pytest.raises(OSError):
        host.connector.run_shell_command(StringCommand("true"))


def test_stopped_instance_fails_to_connect_without_affecting_other_hosts(make_state):
    state = make_state("@lxd_wasm/p1", "@lxd_wasm/stopped1", "@lxd_wasm/p2")
    assert {h.name for h in state.active_hosts} == {"@lxd_wasm/p1", "@lxd_wasm/p2"}
    assert {h.name for h in state.failed_hosts} == {"@lxd_wasm/stopped1"}
    assert run(state.inventory.get_host("@lxd_wasm/p2"), "uname -n")[1].stdout == "p2"
