"""Deploy for test_deploy.py's broken-hosts run (see failing_inventory.py).

Data (``--data``): test_base (remote folder).
"""

import io

from pyinfra import host
from pyinfra.operations import files, server

base = host.data.test_base
mode = host.data.get("fail_mode")

server.shell(name="Create the test folder", commands=[f"mkdir -p {base}"])
if mode == "upload":
    files.put(
        name="Upload into a missing folder",
        src=io.StringIO("x\n"),
        dest=f"{base}/missing/folder/file",
        create_remote_dir=False,
    )
if mode == "timeout":
    server.shell(name="Sleep past the timeout", commands=["sleep 30"], _timeout=1)
server.shell(name="Mark done", commands=[f"touch {base}/done"])
