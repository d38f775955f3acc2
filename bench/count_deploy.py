"""Runs the pyinfra CLI in-process with every connector call counted, then
prints the counts as JSON on stderr's last line: bench/run.py checks that
bench/deploy.py makes 9 run_shell_command and 1 put_file calls per host.

    python3 bench/count_deploy.py PYINFRA-ARGS...
"""

import atexit
import json
import os
import sys
from collections import Counter

import pyinfra_cli  # noqa: F401 - monkey-patches, as the pyinfra CLI does
from pyinfra.api.host import Host
from pyinfra_cli.main import main

counts: Counter = Counter()


def counted(name):
    original = getattr(Host, name)

    def wrapper(self, *args, **kwargs):
        counts[name] += 1
        if os.environ.get("COUNT_DEPLOY_SHOW"):
            print(f"CALL {name} {args[:1]!r}", file=sys.stderr)
        return original(self, *args, **kwargs)

    setattr(Host, name, wrapper)


for method in ("run_shell_command", "put_file", "get_file"):
    counted(method)

atexit.register(lambda: print("COUNTS " + json.dumps(dict(counts)), file=sys.stderr))
sys.argv = ["pyinfra", *sys.argv[1:]]
main()
