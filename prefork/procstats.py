"""What the master reads of a worker process from the kernel, through psutil: memory
(for max_worker_memory) and CPU time (for the status page). A process that has just
exited reads as nothing. Touched only by the master's main thread.
"""

from __future__ import annotations

import psutil

from prefork.config import MemoryMetric


def memory(pid: int, metric: MemoryMetric) -> int | None:
    """Bytes of RSS, or of USS (memory unique to the process: dearer to read)."""
    try:
        proc = psutil.Process(pid)
        return proc.memory_full_info().uss if metric == "uss" else proc.memory_info().rss
    except psutil.Error:
        return None


def usage(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds user + system); zeros for a process that is gone."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        return proc.memory_info().rss, times.user + times.system
    except psutil.Error:
        return 0, 0.0
