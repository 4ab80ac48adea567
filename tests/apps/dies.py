"""An app whose worker dies soon after it starts, before serving anything: a boot loop
as the master sees it (a background thread that crashes, say)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

threading.Timer(0.3, os._exit, args=(3,)).start()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
