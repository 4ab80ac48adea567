"""The seam between the compiled core and the Python reference (prefork/_native_seam.h,
prefork/seam.py): declared once on the C side, held against the Python classes at import.
A renamed field, enum member or method fails at import, named; every method the C calls
is marked @native_calls, and no mark or declaration is stale."""

from __future__ import annotations

import enum
import re
import subprocess
import sys
from pathlib import Path

import pytest

import prefork
from prefork import connstate, seam

native = pytest.importorskip("prefork.native", reason="the compiled core is not built")
_native = native._native

pytestmark = pytest.mark.timeout(60)

PKG = Path(prefork.__file__).resolve().parent
SEAM_ARGS = native._CLASSES  # the classes the import checked


def bind_args(**replace: type) -> list[type]:
    """bind_seam's arguments as native.py gives them, some replaced by name."""
    from prefork import connection, engine, output
    from prefork.http import parser, request
    given = {"Connection": connection.Connection, "RequestParser": parser.RequestParser,
             "_Callbacks": parser._Callbacks, "Output": output.Output,
             "ServerContext": connstate.ServerContext, "Engine": engine.Engine,
             "ParserLimits": parser.ParserLimits, "Request": request.Request,
             "Body": request.Body, "State": connstate.State, "Next": connstate.Next,
             "Ending": connstate.Ending, "ProxyHeader": connstate.ProxyHeader,
             "Watch": connstate.Watch}
    given.update(replace)
    return list(given.values())


def test_a_field_renamed_in_python_is_named_by_the_bind() -> None:
    from prefork.connection import Connection
    slots = tuple(s if s != "deadline" else "due_at" for s in Connection.__slots__)
    renamed = type("Connection", (), {"__slots__": slots})
    with pytest.raises(TypeError, match=r"Connection\.deadline is not a __slots__ field"):
        _native.bind_seam(*bind_args(Connection=renamed))
    _native.bind_seam(*bind_args())  # the real classes still bind (nothing was kept)


def test_an_enum_member_renamed_in_python_is_named_by_the_bind() -> None:
    renamed = enum.Enum("State", ["PARKED", "ACTIVE", "WRITTEN", "LINGER", "CLOSED"])  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"State\.WRITING is not a member of its enum"):
        _native.bind_seam(*bind_args(State=renamed))
    _native.bind_seam(*bind_args())


def test_a_method_renamed_or_unmarked_is_named_by_the_check() -> None:
    class Output:
        @seam.native_calls
        def send(self) -> None: ...

        def discard(self) -> None: ...  # not marked

    with pytest.raises(ImportError) as info:
        seam.check({"Output": ["send", "discard", "flush"]}, {"Output": Output})
    assert "Output.discard (" in str(info.value) and "is not marked" in str(info.value)
    assert "Output.flush does not exist" in str(info.value)
    assert "Output.send" not in str(info.value)


def test_a_method_renamed_fails_the_import_of_the_native_engine() -> None:
    """As a developer would meet it: the reference's method renamed, the engine's module
    imported (a fresh interpreter)."""
    code = ("from prefork import connection\n"
            "connection.Connection._ready_later = connection.Connection._ready_for_next\n"
            "del connection.RequestCycle._ready_for_next\n"
            "import prefork.native\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert "Connection._ready_for_next does not exist" in done.stderr


def declared_qualnames() -> set[str]:
    """The functions the C declares it calls or is handed, resolved on their classes."""
    from prefork.worker import Worker
    classes = {**SEAM_ARGS, "Worker": Worker}
    names = set()
    for kind in ("calls", "references"):
        for cls, methods in native.SEAM[kind].items():
            names.update(getattr(classes[cls], m).__qualname__ for m in methods)
    return names


def test_every_method_the_c_calls_is_marked_and_every_mark_is_declared() -> None:
    import prefork.worker  # noqa: F401  (its marks)
    declared = declared_qualnames()
    marked = {m for m in seam.MARKED if "<locals>" not in m}  # not this file's own
    assert len(declared) >= 25, declared
    assert declared == marked, (sorted(declared - marked), sorted(marked - declared))


def seam_header() -> str:
    return (PKG / "_native_seam.h").read_text()


def test_every_declaration_is_used_by_a_c_file() -> None:
    """No stale declaration: each field, method and member the header declares is used
    by index in some C file other than the seam's own, or its list is used whole (the
    callbacks and limits, in loops; the Watch members, from the first)."""
    header = seam_header()
    indices = re.findall(r"X\(([A-Z]+_[A-Z_]+),", header)
    assert len(indices) > 100, "the test reads the declarations"
    sources = "\n".join(p.read_text() for p in sorted(PKG.glob("_native_*.c"))
                        if p.name != "_native_seam.c")
    whole = {"CB_": "CB_COUNT", "L_": "L_COUNT", "V_WATCH_": "V_WATCH_NOTHING + "}
    unused = [i for i in indices if not re.search(rf"\b{i}\b", sources)
              and not any(i.startswith(p) and use in sources for p, use in whole.items())]
    assert unused == []


def test_the_report_matches_the_classes() -> None:
    """What seam() reports is what the import checked: every field a __slots__ field of
    its class, every member one of its enum."""
    report = native.SEAM
    classes = dict(zip(["Connection", "RequestParser", "_Callbacks", "Output",
                        "ServerContext", "Engine", "ParserLimits", "Request", "Body",
                        "State", "Next", "Ending", "ProxyHeader", "Watch"],
                       bind_args(), strict=True))
    for name, fields in report["slots"].items():
        assert set(fields) <= set(classes[name].__slots__), name
    for name, members in report["members"].items():
        assert all(isinstance(getattr(classes[name], m), classes[name]) for m in members)
    assert set(report) == {"slots", "calls", "references", "members"}
