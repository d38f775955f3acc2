"""A small but complete deploy for test_deploy.py: folder, upload, line,
shell, download, and two facts (written to a local JSON file per host).

Data (``--data``): test_base (remote folder), test_outdir (local folder).
"""

import json
import os

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Os
from pyinfra.operations import files, server

base = host.data.test_base
outdir = host.data.test_outdir
instance = host.name.rsplit("/", 1)[-1].split(":")[-1]
here = os.path.dirname(os.path.abspath(__file__))

files.directory(name="Make the test folder", path=base, mode="755")
files.put(name="Upload the payload", src=os.path.join(here, "payload.txt"), dest=f"{base}/payload.txt", mode="640")
files.line(name="Ensure a managed line", path=f"{base}/settings.conf", line="managed=yes")
server.shell(name="Record the hostname", commands=[f"uname -n > {base}/hostname"])
files.get(
    name="Download the payload",
    src=f"{base}/payload.txt",
    dest=os.path.join(outdir, f"{instance}.payload.txt"),
    add_deploy_dir=False,
)

facts = {"os": host.get_fact(Os), "passwd": host.get_fact(File, path="/etc/passwd")}
with open(os.path.join(outdir, f"{instance}.facts.json"), "w") as f:
    json.dump(facts, f, default=str)
