"""--reload: the files whose change restarts the workers (a development feature).

A worker, once its app is imported, notes the mtime of every Python file of the modules
loaded then (the app's own and what it imports, outside the standard library and
site-packages) and of reload_extra_files; its main thread looks again once a second
and tells the master when one changed or vanished. Polling costs a stat() per file per
second and needs no dependency; it is meant for a developer's machine, not production.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from collections.abc import Iterable


class FileWatch:
    def __init__(self, extra_files: Iterable[str] = ()) -> None:
        skip = tuple({sysconfig.get_paths()[k]
                      for k in ("stdlib", "platstdlib", "purelib", "platlib")})
        paths = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
        files = [p for p in paths if p and p.endswith(".py") and not p.startswith(skip)]
        files += list(extra_files)
        self.mtimes: dict[str, float] = {}
        for path in files:
            with contextlib.suppress(OSError):
                self.mtimes[path] = os.stat(path).st_mtime

    def changed(self) -> str | None:
        """The first watched file whose mtime changed (or that vanished) since the last
        look, if any. Each change is reported once: if the reload it causes fails (the
        new code does not import), the next edit is seen again."""
        for path, mtime in self.mtimes.items():
            try:
                now = os.stat(path).st_mtime
            except OSError:
                del self.mtimes[path]
                return path
            if now != mtime:
                self.mtimes[path] = now
                return path
        return None
