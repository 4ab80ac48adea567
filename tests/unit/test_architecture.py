"""The direction of imports (ARCHITECTURE.md), checked by walking each module's AST."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import prefork

# The package under test: the checkout's, or the installed wheel's (.ci/run tests both).
PKG = Path(prefork.__file__).resolve().parent


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PKG / "http").glob("*.py")), ids=lambda p: p.name)
def test_http_is_bytes_in_objects_out(path: Path) -> None:
    forbidden = {"socket", "os", "threading", "select", "selectors", "prefork.connection",
                 "prefork.worker", "prefork.master", "prefork.wsgi"}
    assert not imports_of(path) & forbidden


def test_master_never_imports_the_http_layer() -> None:
    names = imports_of(PKG / "master.py")
    assert not {n for n in names if n.startswith("prefork.http")}
    assert "prefork.connection" not in names


def test_cli_is_the_only_reader_of_argv() -> None:
    for path in PKG.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "sys.argv" not in path.read_text(), path


def test_every_module_opens_with_a_docstring() -> None:
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path} has no module docstring"


def test_master_supervises_and_never_imports_wsgi() -> None:
    names = imports_of(PKG / "master.py")
    assert "prefork.wsgi" not in names
    assert not {"prefork.static", "prefork.proxy", "prefork.accesslog"} & names


def test_both_ends_of_the_channel_speak_through_one_module() -> None:
    """The master<->worker message format is written in messages.py and nowhere else:
    both ends import it, and neither spells a message's bytes itself."""
    for name in ("master.py", "worker.py"):
        assert "prefork.messages" in imports_of(PKG / name) or \
            "messages" in _from_prefork(PKG / name), name
        text = (PKG / name).read_text()
        for raw in ('b"hb ', 'b"ready"', 'b"serving"', 'b"retire', 'b"reload"'):
            assert raw not in text, (name, raw)


def _from_prefork(path: Path) -> set[str]:
    """Names imported with `from prefork import a, b`."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "prefork":
            out.update(alias.name for alias in node.names)
    return out


def test_connection_states_are_the_connections_own() -> None:
    """The worker hands a connection events and arms what it is asked to; it never sets
    the connection's state or deadline itself."""
    tree = ast.parse((PKG / "worker.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in ("state", "deadline"):
                    assert not (isinstance(target.value, ast.Name)
                                and target.value.id == "conn"), ast.unparse(node)


MAX_LINES = 600
MAX_COMPLEXITY = 20
# The compiled core's limits (C functions are longer than Python's for the same idea:
# every call is checked for an error, every reference let go).
C_MAX_LINES = 1000
C_MAX_COMPLEXITY = 25
C_MAX_PARAMETERS = 8
C_FILES = sorted(PKG.glob("_native*.[ch]"))


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split what it owns"


def complexity(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """McCabe's cyclomatic complexity, counted as radon and ruff's C901 count it (nested
    functions and lambdas are their own blocks, not counted here)."""
    score = 1
    todo: list[ast.AST] = list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda |
                      ast.ClassDef):
            continue
        if isinstance(node, ast.If | ast.IfExp | ast.For | ast.AsyncFor | ast.While |
                      ast.ExceptHandler | ast.match_case | ast.Assert):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        todo.extend(ast.iter_child_nodes(node))
    return score


def test_complexity_counts_decisions() -> None:
    fn = ast.parse("def f(a, b):\n    if a and b:\n        return [x for x in a if x]\n"
                   "    while b:\n        b -= 1\n    return 0\n").body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert complexity(fn) == 1 + 1 + 1 + 2 + 1


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: p.name)
def test_no_function_is_a_maze(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert complexity(node) <= MAX_COMPLEXITY, \
                f"{path.name}:{node.lineno} {node.name} has complexity {complexity(node)}"


def c_over_limits(name: str, text: str) -> list[str]:
    """What in one C file rings a limit: its length, and each function over complexity
    (lizard's count: McCabe's, as ruff's for Python) or over its parameters."""
    import lizard

    found = []
    lines = len(text.splitlines())
    if lines > C_MAX_LINES:
        found.append(f"{name} has {lines} lines (limit {C_MAX_LINES})")
    for fn in lizard.analyze_file.analyze_source_code(name, text).function_list:
        if fn.cyclomatic_complexity > C_MAX_COMPLEXITY:
            found.append(f"{name}:{fn.start_line} {fn.name} has complexity "
                         f"{fn.cyclomatic_complexity} (limit {C_MAX_COMPLEXITY})")
        if fn.parameter_count > C_MAX_PARAMETERS:
            found.append(f"{name}:{fn.start_line} {fn.name} takes {fn.parameter_count} "
                         f"parameters (limit {C_MAX_PARAMETERS})")
    return found


def test_the_c_limits_are_counted() -> None:
    """The count is real: a function with 26 decisions and 9 parameters, in a file of
    1,001 lines, rings all three."""
    branches = "".join(f"    if (a == {i}) {{ return {i}; }}\n" for i in range(25))
    text = ("static int\nf(int a, int b, int c, int d, int e, int g, int h, int i, int j)\n{\n"
            + branches + "    return a && b;\n}\n")
    text += "\n" * (1001 - len(text.splitlines()))
    found = c_over_limits("x.c", text)
    assert [f.split(" ", 1)[1].split(" (")[0] for f in found] == [
        "has 1001 lines", "f has complexity 27", "f takes 9 parameters"], found


@pytest.mark.parametrize("path", C_FILES, ids=lambda p: p.name)
def test_the_compiled_core_stays_within_its_limits(path: Path) -> None:
    """No C file over 1,000 lines, no C function over complexity 25 or 8 parameters
    (the Python limits are the tests above): when one rings, split along a concept."""
    assert c_over_limits(path.name, path.read_text()) == []


def test_private_cpython_api_is_used_in_one_header_only() -> None:
    """CPython's private functions (`_Py...`) and a type's internals (`tp_dict`) are
    named only in _native_compat.h, each behind its version guard: what a new CPython
    needs checking is in one place."""
    uses = {p.name: sorted(set(re.findall(r"\b(_Py\w+|tp_dict)\b", c_source(p))))
            for p in C_FILES if p.name != "_native_compat.h"}
    assert {name: found for name, found in uses.items() if found} == {}
    compat = c_source(PKG / "_native_compat.h")
    assert "_PyDict_NewPresized" in compat and "PY_VERSION_HEX" in compat


def runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports when it runs: at module level or inside a
    function (run later, an import is still an arrow), not under `if TYPE_CHECKING`."""
    own = "prefork." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    own = own.removesuffix(".__init__")
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module, *(f"{child.module}.{a.name}" for a in child.names)]
            found.update(n for n in names if n in modules and n != own)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_import_cycle_in_the_package() -> None:
    """No module imports, at run time, one that imports it back (the engine seam had
    engine -> native -> worker -> engine): each module can be read, tested and replaced
    from the bottom up. The cycles found are named."""
    paths = {("prefork." + ".".join(p.relative_to(PKG).with_suffix("").parts))
             .removesuffix(".__init__"): p for p in PKG.rglob("*.py")}
    graph = {name: runtime_imports(path, set(paths)) for name, path in paths.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
    assert cycles == [], cycles


def c_source(path: Path) -> str:
    """A C file without its comments and string literals (names there are not uses)."""
    text = re.sub(r"/\*.*?\*/", " ", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def test_the_c_files_call_each_other_in_one_direction() -> None:
    """Each name _native.h declares belongs to the C file that defines it; a file that
    uses another's name depends on it; no two files depend on each other, directly or
    round a longer cycle (_native_module.c is the top, _native.c the bottom)."""
    header = c_source(PKG / "_native.h") + c_source(PKG / "_native_seam.h")
    names = set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", header))
    names |= set(re.findall(r"\bextern\s+(?:struct\s+\w+\s+|const\s+)?\w+\s+(\w+)", header))
    sources = {p.name: c_source(p) for p in sorted(PKG.glob("_native*.c"))}
    assert "_native_module.c" in sources
    owner = {}
    for name in names:
        for file, text in sources.items():
            if re.search(rf"^{name}\s*\([^;]*?\)\s*\{{|^(struct\s+)?\w+\s+{name}(\[\])?\s*[=;]",
                         text, re.M):
                owner[name] = file
    assert {"native_intern_all", "native_exchange_use_send", "ExchangeType",
            "native_worker_methods", "native_seam"} <= set(owner), \
        "the test finds the definitions"
    graph = {file: {owner[n] for n in owner if owner[n] != file
                    and re.search(rf"\b{n}\b", text)} for file, text in sources.items()}
    assert "_native_conn.c" in graph["_native_module.c"], "the test finds the uses"
    assert "_native_seam.c" in graph["_native_conn.c"], "and the seam's"
    cycles = []

    def walk(file: str, path: list[str]) -> None:
        for nxt in sorted(graph[file]):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            else:
                walk(nxt, [*path, nxt])

    for file in sorted(graph):
        walk(file, [file])
    assert not cycles, sorted(set(cycles))
