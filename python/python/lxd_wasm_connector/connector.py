"""The ``@lxd_wasm`` and ``@incus_wasm`` pyinfra connectors.

Each host is an LXD (or Incus) instance reached through the sandboxed
lxd-connector WebAssembly component, loaded in-process (no subprocess per
command). Native calls release the GIL and run in a gevent thread pool, so
pyinfra's greenlets for other hosts keep running while one host waits on
the server.
"""

from __future__ import annotations

import codecs
import io
import os
from typing import TYPE_CHECKING

from gevent.threadpool import ThreadPool
from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.api.output import echo, format_text
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector, DataMeta
from pyinfra.connectors.util import (
    CommandOutput,
    OutputLine,
    execute_command_with_sudo_retry,
    extract_control_arguments,
    make_unix_command_for_host,
)
from typing_extensions import TypedDict, Unpack, override

from . import _native

if TYPE_CHECKING:
    from pyinfra.api.arguments import ConnectorArguments
    from pyinfra.api.command import StringCommand
    from pyinfra.api.host import Host
    from pyinfra.api.state import State

PREFIX = "@lxd_wasm"
_CHUNK = 1 << 20


class ConnectorData(TypedDict, total=False):
    lxd_remote: str
    lxd_instance: str
    lxd_container: str
    lxd_project: str


connector_data_meta: dict[str, DataMeta] = {
    "lxd_remote": DataMeta("remote to use (overrides REMOTE: in the host name)"),
    "lxd_instance": DataMeta("instance name (overrides the host name)"),
    "lxd_container": DataMeta("instance name, as older LXD connectors call it"),
    "lxd_project": DataMeta("project (overrides the remote's default project)"),
}

_pool: ThreadPool | None = None


def _call(fn, *args, **kwargs):
    """Runs a blocking native call in gevent's thread pool: this greenlet
    waits, the others (and the hub) go on. An exception is handed back and
    raised here, in the caller's greenlet: raised in the worker thread, gevent
    would also print its traceback for every expected per-host failure."""
    global _pool
    if _pool is None:
        _pool = ThreadPool(int(os.environ.get("LXD_WASM_THREADS", "64")))

    def guarded():
        try:
            return True, fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised in the caller
            return False, e

    ok, value = _pool.apply(guarded)
    if not ok:
        raise value
    return value


def _split_lines(data: bytes) -> list[str]:
    """Lines as pyinfra expects them: split on ``\\n`` only (a ``\\r`` stays),
    no trailing empty line, invalid UTF-8 replaced rather than fatal."""
    if not data:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _stdin_bytes(stdin) -> bytes | None:
    """``_stdin`` as @local/@ssh send it: each line with ``\\n`` appended."""
    if stdin is None:
        return None
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    if not isinstance(stdin, (list, tuple)):
        stdin = [stdin]
    out = bytearray()
    for line in stdin:
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="surrogateescape")
        if not line.endswith("\n"):
            line = f"{line}\n"
        out += line.encode("utf-8", errors="surrogateescape")
    return bytes(out)


class _ByteReader:
    """Lets the native side read any file object as bytes, never more than it
    asks for: a text-mode object's ``read(n)`` returns ``n`` characters, which
    can encode to more than ``n`` bytes."""

    def __init__(self, source):
        self._source = source
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        if not self._pending:
            chunk = self._source.read(n)
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8", errors="surrogateescape")
            if n < 0 or len(chunk) <= n:
                return chunk
            self._pending = chunk
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


class _LivePrinter:
    """Prints a command's output as pyinfra's ``print_output`` does, line by
    line with the host's prefix (stderr in red), while the command runs.
    Called from the native call's thread with each new piece of a stream,
    one piece at a time; ``close`` comes after the call returned. A partial
    line waits for its end, or for ``close``."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._partial = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        *lines, self._partial[stream] = (self._partial[stream] + data).split(b"\n")
        for line in lines:
            self._print(stream, line)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._print(stream, rest)
            self._partial[stream] = b""

    def _print(self, stream: str, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if stream == "stderr":
            text = format_text(text, "red")
        echo(f"{self._prefix}{text}", err=True)


class _TextSink:
    """Lets the native side write bytes into a text-mode IO object."""

    def __init__(self, target):
        self._target = target
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> None:
        self._target.write(self._decoder.decode(data))

    def close(self) -> None:
        self._target.write(self._decoder.decode(b"", final=True))


class LxdWasmConnector(BaseConnector):
    """
    Drive LXD instances through the lxd-connector WebAssembly component.

    .. code:: shell

        pyinfra @lxd_wasm/myremote:c1,@lxd_wasm/myremote:c2 exec -- uptime
        pyinfra @lxd_wasm/c1 deploy.py   # the lxc config's default remote

    Remotes, client certificates and pinned server certificates come from the
    lxc client config (``$LXD_CONF`` or ``~/.config/lxc``). Files are written
    by LXD as root; ``_sudo``/``_su_user`` do not apply to uploads.
    """

    handles_execution = True

    #: The inventory prefix, and whose client config is read.
    prefix = PREFIX
    client = "lxc"

    data_cls = ConnectorData
    data_meta = connector_data_meta
    data: ConnectorData

    def __init__(self, state: State, host: Host):
        super().__init__(state, host)
        self._session = None
        prefix = self.prefix
        name = host.name[len(prefix) + 1 :] if host.name.startswith(prefix + "/") else host.name
        parsed = dict(self._parse(name))
        self._remote = self.data.get("lxd_remote") or parsed.get("remote")
        self._instance = (
            self.data.get("lxd_instance") or self.data.get("lxd_container") or parsed.get("instance")
        )
        self._project = self.data.get("lxd_project")
        if not self._remote:
            try:
                default, problem = _native.default_remote(client=self.client)
            except _native.ConnectorError as e:
                problem = str(e)
            if problem:
                raise InventoryError(
                    f"{prefix}/{name}: no remote given and no usable default remote ({problem}); "
                    f"write the qualified form {prefix}/REMOTE:{self._instance} "
                    "or set the host data lxd_remote"
                )

    @override
    @classmethod
    def make_names_data(cls, name=None):
        prefix = cls.prefix
        if not name:
            raise InventoryError(
                f"{prefix} needs an instance: {prefix}/REMOTE:INSTANCE or {prefix}/INSTANCE"
            )
        cls._parse(name)
        yield f"{prefix}/{name}", {}, [prefix]

    @classmethod
    def _parse(cls, name: str) -> list[tuple[str, str]]:
        try:
            return _native.parse_name(name, client=cls.client)
        except _native.ConnectorError as e:
            raise InventoryError(f"{cls.prefix}/{name}: {e}") from None

    @override
    def connect(self) -> None:
        data = [("instance", self._instance or "")]
        if self._remote:
            data.append(("remote", self._remote))
        if self._project:
            data.append(("project", self._project))
        try:
            self._session = _call(_native.connect, self.host.name, data, client=self.client)
        except _native.ConnectorError as e:
            raise ConnectError(str(e)) from None

    @override
    def disconnect(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            _call(session.close)

    def _require_session(self):
        if self._session is None:
            raise ConnectionError(f"{self.host.name} is not connected")
        return self._session

    @override
    def run_shell_command(
        self,
        command: StringCommand,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> tuple[bool, CommandOutput]:
        control = extract_control_arguments(arguments)
        if control.get("_get_pty"):
            raise NotImplementedError(
                f"{self.prefix} cannot give a command a PTY (LXD's recorded-output exec has none); "
                "drop _get_pty for this host"
            )
        session = self._require_session()
        stdin = _stdin_bytes(control.get("_stdin"))
        timeout = control.get("_timeout")
        timeout_ms = int(float(timeout) * 1000) if timeout else None

        def execute_command() -> tuple[int, CommandOutput]:
            unix_command = make_unix_command_for_host(self.state, self.host, command, **arguments)
            if print_input:
                echo(f"{self.host.print_prefix}>>> {unix_command}", err=True)
            # Printed as it arrives, as pyinfra's @ssh does; a command that
            # ends within a second costs no more round trips for it.
            live = _LivePrinter(self.host.print_prefix) if print_output else None
            # ConnectorTimeout is a TimeoutError and ConnectorError an
            # OSError: pyinfra fails this host only, never the whole run.
            try:
                code, out, err = _call(
                    session.run,
                    unix_command.get_raw_value(),
                    stdin=stdin,
                    timeout_ms=timeout_ms,
                    live=live,
                )
            finally:
                if live is not None:
                    live.close()
            lines = [OutputLine("stdout", line) for line in _split_lines(out)]
            lines += [OutputLine("stderr", line) for line in _split_lines(err)]
            return code, CommandOutput(lines)

        code, output = execute_command_with_sudo_retry(self.host, arguments, execute_command)
        codes = control.get("_success_exit_codes")
        return (code in codes if codes else code == 0), output

    @override
    def put_file(
        self,
        filename_or_io,
        remote_filename,
        remote_temp_filename=None,  # unused: LXD writes the file directly
        print_output: bool = False,
        print_input: bool = False,
        **arguments,
    ) -> bool:
        session = self._require_session()
        with get_file_io(filename_or_io) as f:
            _call(session.put, str(remote_filename), _ByteReader(f))
        if print_output:
            echo(f"{self.host.print_prefix}file uploaded: {remote_filename}", err=True)
        return True

    @override
    def get_file(
        self,
        remote_filename,
        filename_or_io,
        remote_temp_filename=None,  # unused: LXD reads the file directly
        print_output: bool = False,
        print_input: bool = False,
        **arguments,
    ) -> bool:
        session = self._require_session()
        self._get_file(session, remote_filename, filename_or_io)
        if print_output:
            echo(f"{self.host.print_prefix}file downloaded: {remote_filename}", err=True)
        return True

    @staticmethod
    def _get_file(session, remote_filename, filename_or_io) -> None:
        if isinstance(filename_or_io, (str, os.PathLike)):
            # Written beside the destination and renamed at the end: a
            # failed transfer leaves the old file as it was.
            dest = os.fspath(filename_or_io)
            partial = os.path.join(
                os.path.dirname(dest) or ".", f".{os.path.basename(dest)}.lxd_wasm-partial"
            )
            try:
                with open(partial, "wb") as f:
                    _call(session.get, str(remote_filename), f)
                os.replace(partial, dest)
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        elif isinstance(filename_or_io, io.TextIOBase):
            sink = _TextSink(filename_or_io)
            _call(session.get, str(remote_filename), sink)
            sink.close()
        else:
            _call(session.get, str(remote_filename), filename_or_io)


class IncusWasmConnector(LxdWasmConnector):
    """
    Drive Incus instances through the lxd-connector WebAssembly component:
    the same connector, reading the incus client's config (``$INCUS_CONF`` or
    ``~/.config/incus``, remotes added with ``incus remote add``).

    .. code:: shell

        pyinfra @incus_wasm/myremote:c1 exec -- uptime
    """

    prefix = "@incus_wasm"
    client = "incus"
