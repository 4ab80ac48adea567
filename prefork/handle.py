"""The master's record of one worker: its process and channel, its generation, what its
last heartbeat said, and where it is in its life (booting, ready, serving, retiring).

Owned by the master's main thread (master.py writes it; admin.py reads it for the status
page). The worker's own side of the conversation is in messages.py.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from prefork.messages import Heartbeat

NO_BEAT = Heartbeat(0, 0, 0, 0)


@dataclass(slots=True, eq=False)
class WorkerHandle:
    number: int  # 1..workers, reused by its replacement
    pid: int
    process: BaseProcess
    channel: socket.socket  # the master's end
    generation: int
    started: float
    last_seen: float
    lifetime_s: float = 0.0
    ready: bool = False
    serving: bool = False  # it has begun serving requests: its death is no boot loop
    retiring_since: float | None = None
    beat: Heartbeat = NO_BEAT  # its last heartbeat
    over_memory: int = 0
    killed: bool = False  # sent SIGKILL for overstaying: said once in the log

