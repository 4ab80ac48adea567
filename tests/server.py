"""Start a real prefork-serve for a test: port 0, port read back from the log, clean stop.

The server runs in its own session (process group), so teardown can end exactly the
processes this test started, and nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening at (http://\S+|unix:\S+)")


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Server:
    def __init__(self, *args: str, workers: int = 2, threads: int = 4,
                 bind: str | None = "127.0.0.1:0", env: dict[str, str] | None = None,
                 wait_ready: bool = True, config: str | None = None,
                 errorlog: str | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="prefork-test-")
        self.out_path = Path(self.tmp.name) / "server.out"
        # The log to read: the server's stderr, or its errorlog file when it has one.
        self.log_path = Path(errorlog) if errorlog else self.out_path
        # prefix: a command that runs the server, such as `ip netns exec HOST`.
        argv = [*prefix, sys.executable, "-m", "prefork", "--workers", str(workers),
                "--threads", str(threads), "--loglevel", "debug"]
        engine = os.environ.get("TEST_HTTP_ENGINE")  # .ci/run runs the suite once per engine
        if engine:
            argv += ["--http-engine", engine]
        if bind:
            argv += ["--bind", bind]
        if errorlog:
            argv += ["--errorlog", errorlog]
        if config:
            cfg = Path(self.tmp.name) / "config.toml"
            cfg.write_text(config)
            argv += ["-c", str(cfg)]
        argv += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        self.workers = workers
        self._log = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env, cwd=str(ROOT),
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.url = ""
        self.host = "127.0.0.1"
        self.port = 0
        if wait_ready:
            self.wait_ready()

    # -- start-up --------------------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 20.0) -> None:
        def listening() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n"
                                     f"{self.out_path.read_text(errors='replace')}{self.log()}")
            m = LISTEN_RE.search(self.log())
            return m.group(1) if m else None

        self.url = wait_for(listening, timeout, what="the listening line")
        if self.url.startswith("http://"):
            hostport = self.url[len("http://"):]
            host, _, port = hostport.rpartition(":")
            self.host, self.port = host.strip("[]"), int(port)
        wait_for(lambda: self.log().count(" is ready") >= self.workers, timeout,
                 what=f"{self.workers} ready workers")

    # -- talking to it ---------------------------------------------------------------------
    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, **kw)

    # -- processes -------------------------------------------------------------------------
    def worker_pids(self) -> set[int]:
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        pids = set()
        for child in children:
            try:  # a child may exit between the listing and this look (a failed start)
                if child.status() != psutil.STATUS_ZOMBIE:
                    pids.add(child.pid)
            except psutil.NoSuchProcess:
                pass
        return pids

    def tree_pids(self) -> set[int]:
        return {self.pid} | self.worker_pids()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """End the server and everything in its process group; never anything else."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()
        self.tmp.cleanup()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
