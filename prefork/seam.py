"""The Python half of the seam with the compiled core: `@native_calls` marks each method
the C files call by name, or are handed whole as the reference for what they leave to
Python, so that a reader of the method knows that C calls it (and that renaming it means
renaming it in prefork/_native_seam.h, where the C side declares it).

`check` holds the C side's declaration (`_native.seam()`: its methods called and
references, by class name) against the classes: prefork/native.py calls it at import
(and `native.bind_worker` for the worker's class), so that a method renamed, removed or
not marked fails there, named. Imports nothing of the package: any module may mark its
methods. The registry is written at import time, read afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# The functions marked: their __qualname__ (Class.method), as each module is imported.
MARKED: set[str] = set()


def native_calls(fn: F) -> F:
    """Mark a method the compiled core calls (see prefork/_native_seam.h)."""
    MARKED.add(fn.__qualname__)
    return fn


def check(declared: Mapping[str, Iterable[str]], classes: Mapping[str, type]) -> None:
    """Each method `declared` by class name exists on that class (or a base) and is
    marked @native_calls; else ImportError naming every one that is not. Classes not in
    `classes` are checked by another caller (the worker's, by native.bind_worker)."""
    wrong = []
    for name, methods in declared.items():
        cls = classes.get(name)
        if cls is None:
            continue
        for method in methods:
            fn = getattr(cls, method, None)
            qualname = getattr(fn, "__qualname__", None)
            if fn is None:
                wrong.append(f"{name}.{method} does not exist")
            elif qualname not in MARKED:
                wrong.append(f"{name}.{method} ({qualname}) is not marked @native_calls")
    if wrong:
        raise ImportError("the compiled core's seam (prefork/_native_seam.h) does not match "
                          "the Python classes: " + "; ".join(wrong))
