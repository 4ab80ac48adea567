"""A gunicorn user's inputs, read as prefork settings: their Python config file (or
module), their command-line flags, GUNICORN_CMD_ARGS and the environment variables
gunicorn reads. Read by the CLI in the master, at start-up and on reload.

Every gunicorn name gets one of three answers (gunicorn_names.py has the table):
mapped to prefork's setting; accepted with no effect here (said once); or refused in one
line naming the setting, the value and what to do instead. Nothing is dropped silently.
"""

from __future__ import annotations

import difflib
import importlib
import json
import runpy
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prefork.errors import ConfigError
from prefork.gunicorn_names import (
    AT_DEFAULT,
    FLAGS,
    HOOKS,
    IDLE_HOOKS,
    NO_EFFECT,
    RENAMED,
    at_default,
)

__all__ = ["HOOKS", "RENAMED", "PythonConfig", "environ_defaults", "read_python_config",
           "suggest", "translate_flags"]

CMD_ARGS_ENV = "GUNICORN_CMD_ARGS"
DEFAULT_CONFIG = "gunicorn.conf.py"  # read from the working directory when no -c is given
SYNC_CLASSES = frozenset({"sync", "gthread"})


def note(text: str) -> None:
    """One line for the user at start-up (before logging is set up)."""
    print(f"prefork-serve: note: {text}", file=sys.stderr)


def suggest(name: str, known: Iterable[str]) -> str:
    """What to say about an unknown setting `name`: gunicorn's spelling mapped, what to do
    instead of a gunicorn setting prefork lacks, or a close match."""
    if name in RENAMED:
        return f"gunicorn calls it {name!r}; prefork calls it {RENAMED[name]!r}"
    if name in AT_DEFAULT:
        return f"gunicorn's {name!r} is not supported: {AT_DEFAULT[name].instead}"
    if name in NO_EFFECT:
        return f"gunicorn's {name!r} has no effect in prefork: {NO_EFFECT[name]}"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


def worker_class_name(value: object) -> str:
    """'gthread' of 'gthread', 'gunicorn.workers.gthread.ThreadWorker'... in lower case."""
    return str(value).split(".")[-1].lower().removesuffix("worker")


def sync_class(value: object) -> bool:
    """A worker class that means what prefork's workers do (sync, gthread)."""
    return worker_class_name(value) in SYNC_CLASSES


def one_at_a_time(value: object) -> bool:
    """gunicorn's sync worker: one request at a time per worker."""
    return worker_class_name(value).startswith("sync")


def gunicorn_value(name: str, value: object, source: str) -> bool:
    """A gunicorn-only setting's value: True if accepted (said once), else refused."""
    if name in NO_EFFECT:
        note(f"{source}: {name} = {show(value)} has no effect: {NO_EFFECT[name]}")
        return True
    if at_default(name, value):
        return True
    raise ConfigError(name, show(value), f"gunicorn's {name!r} is not supported: "
                      f"{AT_DEFAULT[name].instead}", source)


def show(value: object) -> str:
    """A value as the user wrote it (no Python tuples; floats as typed)."""
    if isinstance(value, list | tuple):
        return ",".join(show(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- the command line -----------------------------------------------------------------------
def translate_flags(argv: list[str], known_flags: Mapping[str, bool],
                    source: str = "command line") -> list[str]:
    """gunicorn's flags that prefork's parser lacks: accepted with no effect (dropped and
    said), accepted at gunicorn's default, or refused in one line; a flag unknown to both
    gets "did you mean". `-k sync` also means one thread per worker, as in gunicorn,
    unless --threads is given. `known_flags`: prefork's flags, and whether each takes a
    value. Returns the argv for prefork's parser."""
    out: list[str] = []
    sync = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, _value = arg.partition("=")
        if arg == "--":
            out += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            out.append(arg)
            i += 1
        elif flag in known_flags and flag not in ("-k", "--worker-class"):
            takes = known_flags[flag] and not eq
            out += argv[i:i + 2] if takes else [arg]  # a value may begin with "-"
            i += 2 if takes else 1
        else:
            used, is_sync = gunicorn_flag(argv, i, known_flags, source)
            sync = sync or is_sync
            i += used
    if sync and not any(a == "--threads" or a.startswith("--threads=") for a in out):
        note("-k sync: one thread per worker, as gunicorn's sync worker (give --threads "
             "for more)")
        out += ["--threads", "1"]
    return out


def gunicorn_flag(argv: list[str], i: int, known_flags: Mapping[str, bool], source: str
                  ) -> tuple[int, bool]:
    """argv[i], a flag of gunicorn's only: accepted (dropped) or refused. Returns how many
    items it used, and whether it asked for the sync worker."""
    arg = argv[i]
    flag, eq, value = arg.partition("=")
    if flag.startswith("-k") and len(flag) > 2 and not flag.startswith("--"):
        flag, eq, value = "-k", "=", flag[2:]  # -kgevent
    if flag not in FLAGS:
        raise ConfigError(flag, arg, f"unknown option{unknown_flag_hint(flag, known_flags)}",
                          source)
    name, takes_value = FLAGS[flag]
    used = 1
    if takes_value and not eq:
        if i + 1 >= len(argv):
            raise ConfigError(name, flag, "the option needs a value", source)
        value, used = argv[i + 1], 2
    if name == "worker_class":
        if not sync_class(value):
            raise ConfigError(name, value, f"{flag} {value} is not supported: "
                              f"{AT_DEFAULT[name].instead}", source)
        note(f"{flag} {value}: prefork's workers are processes with thread pools "
             "(gthread); the flag is not needed")
        return used, one_at_a_time(value)
    gunicorn_value(name, value if takes_value else True, f"{source} {flag}")
    return used, False


def unknown_flag_hint(flag: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(flag, sorted(set(known) | set(FLAGS)), n=1, cutoff=0.7)
    return f"; did you mean {close[0]}?" if close else "; see prefork-serve --help"


# -- the environment ------------------------------------------------------------------------
def environ_defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    """What gunicorn takes from the environment as defaults (below every config source):
    WEB_CONCURRENCY (workers), FORWARDED_ALLOW_IPS, SCRIPT_NAME (root_path)."""
    out: dict[str, Any] = {}
    if environ.get("WEB_CONCURRENCY"):
        out["workers"] = environ["WEB_CONCURRENCY"]
    if "FORWARDED_ALLOW_IPS" in environ:
        out["forwarded_allow_ips"] = split_list(environ["FORWARDED_ALLOW_IPS"])
    if environ.get("SCRIPT_NAME"):
        out["root_path"] = environ["SCRIPT_NAME"]
    return out


def split_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


# -- Python config files ----------------------------------------------------------------------
PythonConfig = tuple[dict[str, Any], dict[str, Callable[..., Any]], list[str]]


def read_python_config(path: str, known: Iterable[str]) -> PythonConfig:
    """Execute a gunicorn-style Python config file, or import `python:MODULE` (it is the
    user's own code, as gunicorn runs it), and return ({setting: raw value}, {hook name:
    callable}, warnings).

    Every gunicorn name is mapped, accepted without effect, or refused (a TLS setting
    silently dropped would serve plain HTTP). Other lower-case names get a warning with
    a suggestion (gunicorn ignores them silently); UPPER_CASE names, functions, classes
    and modules are the file's own and are left alone."""
    try:
        if path.startswith("python:"):
            namespace = vars(importlib.import_module(path.removeprefix("python:")))
        else:
            namespace = runpy.run_path(path)
    except FileNotFoundError:
        raise ConfigError("config", path, "the config file does not exist") from None
    except Exception as exc:  # the user's code failed: say where
        raise ConfigError("config", path, f"running the Python config failed: "
                          f"{type(exc).__name__}: {exc}") from None
    return from_namespace(namespace, set(known), path)


def from_namespace(namespace: Mapping[str, Any], known: set[str], path: str) -> PythonConfig:
    values: dict[str, Any] = {}
    hooks: dict[str, Callable[..., Any]] = {}
    warnings: list[str] = []
    for name, value in namespace.items():
        if name.startswith("_") or name.isupper() or _is_module_or_import(value):
            continue
        if name in HOOKS or name in IDLE_HOOKS:
            if not callable(value):
                raise ConfigError(name, value, "a server hook must be callable", path)
            if name in HOOKS:
                hooks[name] = value
            else:
                note(f"{path}: hook {name} is never called: {IDLE_HOOKS[name]}")
            continue
        if name == "worker_class":
            if not sync_class(value):
                gunicorn_value(name, value, path)  # refused, saying why
            if one_at_a_time(value) and "threads" not in namespace:
                values["threads"] = 1  # gunicorn's sync worker: one request at a time
            continue
        target = RENAMED.get(name, name)
        if target in known:
            converted = _from_python(target, value)
            if converted is not None:
                values[target] = converted
            continue
        if name in NO_EFFECT or name in AT_DEFAULT:
            gunicorn_value(name, value, path)
            continue
        if callable(value):
            continue  # a helper function of the file's own
        hint = suggest(name, known)
        warnings.append(f"{path}: {name!r} is not a prefork setting; ignored"
                        + (f" ({hint})" if hint else ""))
    return values, hooks, warnings


def _is_module_or_import(value: object) -> bool:
    return isinstance(value, types.ModuleType) or (
        isinstance(value, type) and value.__module__ != "__main__")


def _from_python(name: str, value: Any) -> Any:
    """gunicorn's Python values in prefork's raw forms (lists for lists, None for "not
    set", and so on); None: leave prefork's default."""
    if value is None:
        return None  # gunicorn's "not set" (pidfile, user, group, pythonpath, accesslog)
    if name in ("bind", "env", "forwarded_allow_ips", "proxy_allow_ips", "pythonpath",
                "reload_extra_files") and isinstance(value, str):
        return split_list(value)
    if name == "logconfig_dict" and isinstance(value, dict):
        return json.dumps(value, default=str) if value else None
    if name == "proxy_protocol" and isinstance(value, bool):  # gunicorn before 23
        return "auto" if value else "off"
    if name == "umask" and isinstance(value, int):
        return oct(value) if value else None  # gunicorn's 0: the umask is left alone
    if name in ("user", "group") and value == 0 and not isinstance(value, bool):
        return None  # gunicorn's default is the current user: nothing to change
    if isinstance(value, tuple):
        return list(value)
    return value
