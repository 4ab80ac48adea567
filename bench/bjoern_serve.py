"""bjoern for the benchmark rig: it has no command line and no workers, so this script
forks `workers` processes that each run bjoern's event loop on one shared SO_REUSEPORT
port. bjoern (libev, C, one thread per process) is the floor for what a WSGI server's own
code costs per request: the reference the native request path measures itself against.

    python bench/bjoern_serve.py PORT [WORKERS]

Optional: `pip install bjoern` needs libev-dev from the distribution (bench/run.sh
installs both when it can). Run from bench/, so that `apps` imports.
"""

from __future__ import annotations

import os
import signal
import sys

import bjoern
from apps import app


def main() -> None:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            bjoern.run(app, "127.0.0.1", port, reuse_port=True)
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(c, signal.SIGKILL) for c in children])
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
