"""Records, per host, how many times this pyinfra process compiled the
component: once while preparing (after every host connected) and once while
the operations run. Data: test_outdir (local folder)."""

import os

from lxd_wasm_connector import _native
from pyinfra import host
from pyinfra.operations import python, server

outdir = host.data.test_outdir
instance = host.name.rsplit("/", 1)[-1]


def record(stage):
    with open(os.path.join(outdir, f"{instance}.{stage}"), "w") as f:
        f.write(str(_native.runtimes_loaded()))


record("prepare")
server.shell(name="Run a command", commands=["true"])
python.call(name="Record after running", function=record, stage="run")
