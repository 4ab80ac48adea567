"""Three prefork instances behind one nginx (deploy/nginx/prefork.conf, as shipped):
a rolling restart under load loses nothing; a hard stop of one fails only what it had in
flight. Instances are separate processes on separate loopback ports."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.load import Load
from tests.integration.test_nginx import Nginx, free_port
from tests.server import ROOT, Server, wait_for

pytestmark = pytest.mark.timeout(120)
SHIPPED = ROOT / "deploy" / "nginx" / "prefork.conf"


def nginx_for(ports: list[int], listen: int) -> str:
    conf = SHIPPED.read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in ports)
    conf = conf.replace("    server 127.0.0.1:8000 max_fails=1 fail_timeout=2s;\n", servers)
    assert servers in conf
    return conf.replace("listen 80;", f"listen 127.0.0.2:{listen};")


def instance(port: int = 0) -> Server:
    return Server("tests.apps.basic:app", bind=f"127.0.0.1:{port}", workers=1, threads=4)


def front(port: int) -> Server:
    view = Server.__new__(Server)  # only host and port: the load goes to nginx
    view.host, view.port = "127.0.0.2", port
    return view


def test_rolling_restart_and_hard_stop(tmp_path: Path) -> None:
    servers = [instance() for _ in range(3)]
    ports = [s.port for s in servers]
    listen = free_port()
    nginx = Nginx(tmp_path / "nginx", nginx_for(ports, listen))
    try:
        nginx.wait(listen)
        load = Load(front(listen), "/hello", clients=4, keep_alive=True, max_seconds=90).start()
        load.more(300, timeout=10, what="load through nginx")
        started = time.monotonic()
        for i, port in enumerate(ports):  # one at a time: drain, replace, wait, next
            servers[i].signal(signal.SIGTERM)
            assert servers[i].wait_exit(20) == 0
            servers[i].stop()
            servers[i] = instance(port)
            new_pids = servers[i].worker_pids()

            def back_in_rotation(pids: set[int] = new_pids) -> bool:
                # The balancer must be sending it traffic again before the next one goes.
                try:
                    return int(front(listen).get("/pid", timeout=5)[2]) in pids
                except (OSError, ValueError):
                    return False

            wait_for(back_in_rotation, timeout=20, interval=0.05,
                     what=f"instance {i} back in nginx's rotation")
        rolled_s = time.monotonic() - started
        load.more(300, timeout=10, what="service after the roll")
        rolling_failed = list(load.failed)
        assert rolling_failed == [], rolling_failed[:3]

        servers[0].signal(signal.SIGKILL)  # one machine dies
        load.more(1000, timeout=20, what="the others to carry on")
        load.stop()
        hard_failed = len(load.failed) - len(rolling_failed)
        assert hard_failed <= 4, load.failed[-5:]  # at most what it had in flight
        print(f"\nFIGURE scale-out: rolling restart of 3 instances in {rolled_s:.1f} s, "
              f"0 failed; hard stop of one: {hard_failed} failed; {load.ok} requests ok")
    finally:
        nginx.stop()
        for srv in servers:
            srv.stop()
