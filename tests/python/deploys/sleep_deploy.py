"""One server.shell op sleeping ``--data sleep_seconds=N`` on every host."""

from pyinfra import host
from pyinfra.operations import server

server.shell(name="Sleep", commands=[f"sleep {host.data.sleep_seconds}"])
