"""Realistic traffic against the load-test app (loadtests/app.py).

Four kinds of users, mixed by weight:

* `Browser` (HttpUser): a person clicking through HTML pages and sometimes uploading a file.
  HttpUser (python-requests) is slower per request but behaves like a real client library:
  cookies, redirects and multipart encoding as an app's users would send them. Realism
  matters more than throughput here.
* `ApiClient` (FastHttpUser): a service calling the JSON API (reads and writes) over
  keep-alive. FastHttpUser (geventhttpclient) costs a fraction of the CPU per request, so
  one locust process can push the server instead of itself becoming the bottleneck.
* `OneShotClient` (FastHttpUser): a client that opens a new connection for every request
  (Connection: close), as health checkers, scripts and some proxies do.
* `SlowAndHeavy` (FastHttpUser): streamed downloads, I/O-bound views that hold a thread,
  and CPU-bound views: what fills a server's threads and cores.

Run it through loadtests/run.py, which starts the server, bounds the run and writes the
reports.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task
from locust.contrib.fasthttp import FastHttpUser

UPLOAD_BYTES = int(os.environ.get("LOADTEST_UPLOAD_BYTES", str(2 << 20)))
_UPLOAD = os.urandom(UPLOAD_BYTES)


class Browser(HttpUser):
    weight = 3
    wait_time = between(0.1, 0.5)

    @task(10)
    def browse(self) -> None:
        self.client.get(f"/page/{random.randrange(100)}", name="/page/[n]")

    @task(3)
    def home(self) -> None:
        self.client.get("/")

    @task(1)
    def upload_form(self) -> None:
        size = random.choice((16 << 10, 256 << 10, UPLOAD_BYTES))
        with self.client.post("/upload", files={"file": ("data.bin", _UPLOAD[:size])},
                              name="/upload (multipart)", catch_response=True) as resp:
            if resp.status_code == 200 and resp.json()["bytes"] < size:
                resp.failure("upload truncated")


class ApiClient(FastHttpUser):
    weight = 4
    wait_time = between(0.01, 0.1)

    @task(10)
    def list_items(self) -> None:
        self.client.get(f"/api/items?limit={random.choice((10, 50))}", name="/api/items")

    @task(10)
    def read_item(self) -> None:
        self.client.get(f"/api/items/{random.randint(1, 1000)}", name="/api/items/[id]")

    @task(3)
    def create_item(self) -> None:
        self.client.post("/api/items", json={"name": "widget", "price": 9.5},
                         name="/api/items (POST)")

    @task(2)
    def update_item(self) -> None:
        self.client.put(f"/api/items/{random.randint(1, 1000)}", json={"stock": 3},
                        name="/api/items/[id] (PUT)")

    @task(1)
    def raw_upload(self) -> None:
        self.client.post("/upload", data=_UPLOAD[:256 << 10], name="/upload (raw)")


class OneShotClient(FastHttpUser):
    weight = 1
    wait_time = between(0.05, 0.2)

    @task
    def fresh_connection(self) -> None:
        self.client.get(f"/api/items/{random.randint(1, 1000)}",
                        headers={"Connection": "close"}, name="/api/items/[id] (new conn)")


class SlowAndHeavy(FastHttpUser):
    weight = 2
    wait_time = between(0.1, 0.3)

    @task(3)
    def slow_io(self) -> None:
        self.client.get(f"/slow?ms={random.choice((20, 50, 100))}", name="/slow")

    @task(2)
    def stream(self) -> None:
        with self.client.get("/stream?chunks=64&size=16384", name="/stream (chunked)",
                             catch_response=True) as resp:
            if len(resp.content or b"") != 64 * 16384:
                resp.failure(f"stream truncated: {len(resp.content or b'')} bytes")

    @task(1)
    def cpu(self) -> None:
        self.client.get("/cpu?n=2000", name="/cpu")
