"""Three hosts behind one nginx, each host a network namespace of its own (veth pairs on a
bridge, its own address), created by this test as root and removed afterwards. Under load
through nginx: a rolling HUP, a rolling USR2, a rolling stop/start lose nothing; a host
whose link goes down and a host that is SIGSTOPped lose only what nginx cannot retry.

Skipped with a message where the kernel or privileges forbid namespaces; the loopback
version (test_scaleout.py) stays as the fallback. Traffic stays on this machine: the
addresses live only inside the namespaces and the bridge this test makes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.load import Load
from tests.integration.test_nginx import Nginx, free_port
from tests.integration.test_scaleout import SHIPPED, front
from tests.server import Server, alive, wait_for

pytestmark = pytest.mark.timeout(240)
NET = "10.253.0"  # the bridge is .1; host i is .1i
PORT = 8000


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=10)


class Hosts:
    """A bridge and `count` namespaces attached to it, each with one address."""

    def __init__(self, count: int) -> None:
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"pfbr{tag}"
        self.names = [f"pf{tag}h{i}" for i in range(1, count + 1)]
        self.links = [f"pf{tag}v{i}" for i in range(1, count + 1)]  # the bridge's ends
        self.addresses = [f"{NET}.1{i}" for i in range(1, count + 1)]

    def __enter__(self) -> Hosts:
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{NET}.1/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for ns, link, addr in zip(self.names, self.links, self.addresses, strict=True):
                ip("netns", "add", ns)
                ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
                ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
                ip("-n", ns, "link", "set", "lo", "up")
                ip("link", "set", link, "master", self.bridge)
                ip("link", "set", link, "up")
        except (subprocess.CalledProcessError, OSError) as exc:
            self.__exit__()
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
            pytest.skip(f"network namespaces unavailable here: {detail}")
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in self.names:
            ip("netns", "del", ns, check=False)  # takes its veth pair with it
        ip("link", "del", self.bridge, check=False)

    def prefix(self, i: int) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.names[i])


def nginx_conf(addresses: list[str], listen: int) -> str:
    conf = SHIPPED.read_text()
    servers = "".join(f"    server {a}:{PORT} max_fails=1 fail_timeout=2s;\n" for a in addresses)
    conf = conf.replace("    server 127.0.0.1:8000 max_fails=1 fail_timeout=2s;\n", servers)
    assert servers in conf
    # A stopped host answers nothing: nginx gives up on it after 3 s (shipped: 60 s, for
    # slow apps) and retries the request on another host.
    conf = conf.replace("proxy_read_timeout 60s;", "proxy_read_timeout 3s;")
    return conf.replace("listen 80;", f"listen 127.0.0.2:{listen};")


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    with Hosts(3) as h:
        yield h


def test_rolling_operations_across_three_hosts(hosts: Hosts, tmp_path: Path) -> None:
    pidfiles = [tmp_path / f"h{i}.pid" for i in range(3)]

    def start(i: int) -> Server:
        return Server("tests.apps.basic:app", "--pidfile", str(pidfiles[i]),
                      bind=f"{hosts.addresses[i]}:{PORT}", workers=2, threads=4,
                      prefix=hosts.prefix(i))

    def read_pid(i: int) -> int | None:
        try:  # a master being replaced renames the file away for a moment
            return int(pidfiles[i].read_text())
        except (OSError, ValueError):
            return None

    def master(i: int) -> int:
        return int(wait_for(lambda: read_pid(i), timeout=30, what=f"host {i}'s pidfile"))

    servers = [start(i) for i in range(3)]
    listen = free_port()
    nginx = Nginx(tmp_path / "nginx", nginx_conf(hosts.addresses, listen))
    figures: dict[str, str] = {}

    def nginx_errors() -> str:
        return (tmp_path / "nginx" / "error.log").read_text()
    try:
        nginx.wait(listen)
        load = Load(front(listen), "/hello", clients=4, keep_alive=True,
                    max_seconds=200).start()
        load.more(300, timeout=15, what="load through nginx")

        def steady(what: str) -> None:
            ok = load.ok
            try:
                load.more(200, timeout=20, what=f"service after {what}")
            except AssertionError as exc:  # what nginx and each host saw, to explain it
                hosts_said = "\n".join(f"--- host {i}:\n{srv.log()[-2000:]}"
                                        for i, srv in enumerate(servers))
                raise AssertionError(f"{exc}; {load.ok - ok} ok, {len(load.failed)} failed"
                                     f"\n--- nginx:\n{nginx_errors()[-3000:]}\n"
                                     f"{hosts_said}") from None

        def answering(i: int) -> bool:
            # Straight to the host (bypassing nginx): its new workers serve.
            with contextlib.suppress(OSError):
                return servers[i].get("/hello", timeout=2)[0] == 200
            return False

        def in_rotation(i: int) -> bool:
            # nginx sends traffic to the host again (a host refused while it restarted is
            # held out for fail_timeout): only then may the next one go.
            try:
                return int(front(listen).get("/pid", timeout=5)[2]) in servers[i].worker_pids()
            except (OSError, ValueError):
                return False

        started = time.monotonic()
        for i in range(3):  # rolling HUP: each host reloads its workers in place
            ready = servers[i].log().count("reload:")
            os.kill(master(i), signal.SIGHUP)
            wait_for(lambda i=i, n=ready: servers[i].log().count("reload:") > n, timeout=30,
                     what=f"host {i} reloaded")
        steady("the rolling HUP")
        figures["HUP"] = f"{time.monotonic() - started:.1f} s"

        started = time.monotonic()
        for i in range(3):  # rolling USR2: a new master on each host takes the sockets
            old = master(i)
            os.kill(old, signal.SIGUSR2)
            wait_for(lambda i=i, old=old: read_pid(i) not in (None, old),
                     timeout=30, what=f"host {i}'s new master")
            wait_for(lambda old=old: not alive(old), timeout=30, what="the old master to go")
            assert answering(i)
        steady("the rolling USR2")
        figures["USR2"] = f"{time.monotonic() - started:.1f} s"

        started = time.monotonic()
        for i in range(3):  # rolling stop and start
            os.kill(master(i), signal.SIGTERM)
            wait_for(lambda i=i: not pidfiles[i].exists(), timeout=30, what="a clean stop")
            servers[i].stop()
            servers[i] = start(i)
            wait_for(lambda i=i: in_rotation(i), timeout=20, interval=0.05,
                     what=f"host {i} back in nginx's rotation")
        steady("the rolling restart")
        figures["stop/start"] = f"{time.monotonic() - started:.1f} s"
        rolling_failed = list(load.failed)
        assert rolling_failed == [], (len(rolling_failed), rolling_failed[:1],
                                     nginx_errors()[-3000:])
        rolled_ok = load.ok

        def lost_for(seconds: float, host: int, what: str) -> None:
            """Keep host `host` lost while the load goes on: long enough for nginx's
            connect (2 s) and read (3 s) timeouts to fire and its retries to be needed."""
            since, ok, seen = time.monotonic(), load.ok, len(nginx_errors())
            wait_for(lambda: time.monotonic() - since >= seconds and load.ok > ok + 200,
                     timeout=seconds + 20, interval=0.1, what=f"service while {what}")
            noticed = [line for line in nginx_errors()[seen:].splitlines()
                       if "timed out" in line and f"//{hosts.addresses[host]}:" in line]
            assert noticed, f"nginx never timed out on the host while {what}"

        ip("link", "set", hosts.links[0], "down")  # host 0 drops off the network
        lost_for(7, 0, "host 0's link was down")
        ip("link", "set", hosts.links[0], "up")
        link_failed = len(load.failed)
        figures["link down"] = f"{link_failed} failed"

        pgid = os.getpgid(master(1))
        os.killpg(pgid, signal.SIGSTOP)  # host 1 hangs: master and workers
        try:
            lost_for(7, 1, "host 1 was stopped")
        finally:
            os.killpg(pgid, signal.SIGCONT)
        stop_failed = len(load.failed) - link_failed
        figures["SIGSTOP"] = f"{stop_failed} failed"
        steady("host 1 came back")
        load.stop()
        print(f"\nFIGURE netns scale-out: {load.ok} requests ok; rolling HUP "
              f"{figures['HUP']}, USR2 {figures['USR2']}, stop/start {figures['stop/start']}: "
              f"0 failed of {rolled_ok}; link down: {link_failed} failed; "
              f"SIGSTOP: {stop_failed} failed")
        # What nginx cannot retry: requests it had already sent to the lost host (its
        # keep-alive connections' in-flight requests, one per load client at most).
        assert link_failed <= 4 and stop_failed <= 4, load.failed[-5:]
    finally:
        nginx.stop()
        for srv in servers:
            srv.stop()
