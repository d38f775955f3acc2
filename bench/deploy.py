"""The benchmark's small deploy: 9 run_shell_command + 1 put_file per host
(checked by bench/count_deploy.py on every benchmark run), on a fresh
/tmp/bench-deploy (bench/run.py removes it before each run).

The 9 commands: the Os fact (uname -s); for files.put the File fact of the
file (twice) and of its folder, mkdir -p, the temp-dir fact; the shell
command; for files.line its FindInFile fact and the echo >> that adds it."""

from io import BytesIO

from pyinfra import host
from pyinfra.facts.server import Os
from pyinfra.operations import files, server

files.put(
    name="Upload a small file",
    src=BytesIO(b"benchmark motd\n" * 8),
    dest="/tmp/bench-deploy/motd",
)
server.shell(name="Run a command", commands=["true"])
files.line(name="Ensure a line", path="/tmp/bench-deploy/motd", line="bench-line")
host.get_fact(Os)
