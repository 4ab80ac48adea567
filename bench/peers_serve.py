"""Launchers for the peers that have no command line with workers and threads:

    python bench/peers_serve.py fastpysgi PORT WORKERS
    python bench/peers_serve.py pyruvate PORT WORKERS THREADS

fastpysgi (libuv, C, one thread per process; fastwsgi's successor) forks its own workers
on one listening socket. pyruvate (Rust, a pool of threads in one process) binds the
address itself, so a second process cannot share it: it runs as one process with
WORKERS x THREADS threads, the same number of app threads as the others. Run from bench/,
so that `apps` imports. Optional: `pip install fastpysgi pyruvate` (bench/run.sh).
"""

from __future__ import annotations

import sys

from apps import app


def main() -> None:
    name, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if name == "fastpysgi":
        import fastpysgi

        fastpysgi.run(wsgi_app=app, host="127.0.0.1", port=port, workers=workers,
                      loglevel=0)
    elif name == "pyruvate":
        import pyruvate

        threads = int(sys.argv[4])
        # As a user gets it. With its defaults pyruvate 1.6.1 answers every request with
        # "Connection: close", so its keep-alive figure is a new-connection figure; with
        # max_reuse_count=255 (its largest) it answers "Connection: keep-alive" (even to a
        # client that sent "Connection: close") but did not answer a second request on the
        # connection within 3 s (a raw-socket probe here), so wrk would only stall.
        pyruvate.serve(app, f"127.0.0.1:{port}", workers * threads)
    else:
        sys.exit(f"unknown peer {name!r}")


if __name__ == "__main__":
    main()
