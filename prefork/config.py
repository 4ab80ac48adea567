"""Every setting, declared once, and how a frozen `Config` is resolved from its sources.

Each field of `Config` *is* the declaration of one setting: its name, type (the annotation),
default, unit, one line of documentation and its validation (in the field's metadata). From
that one declaration come the TOML keys, the `--flag` of the command line, the `PREFORK_*`
environment variable, `--check-config` and the documented `config.toml`.

Precedence, highest first: command line > environment > file > defaults.

Names are flat and unique: tables in the TOML file may group settings for readability, but a
setting's name never depends on its table (`[workers] graceful_timeout = 5` and a top-level
`graceful_timeout = 5` mean the same). An unknown key, a wrong type or an out-of-range value
is a `ConfigError` naming the key, the value and what is allowed.

Touched by the master (and read-only by workers, which inherit the frozen object on fork).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prefork.config_checks import (
    check_app,
    check_bind,
    check_json_object,
    check_log_format,
    normalise,
)
from prefork.cpus import available_cpus
from prefork.errors import ConfigError
from prefork.proxy import check_allow_ips
from prefork.values import Kind, Refused, SettingMeta, StaticMount, convert, describe_type

ENV_PREFIX = "PREFORK_"
# Variables with the prefix that are not settings: the config file, and what a master
# hands to the master that replaces it on SIGUSR2.
ENV_INTERNAL = frozenset({"PREFORK_CONFIG", "PREFORK_INHERIT_FDS", "PREFORK_INHERIT_ADMIN_FD",
                          "PREFORK_UPGRADE_FROM"})
SECONDS = 1.0
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
ProxyProtocol = Literal["off", "v1", "v2", "auto"]
MemoryMetric = Literal["rss", "uss"]
HttpEngine = Literal["auto", "native", "python"]
ErrorLogFormat = Literal["prefork", "gunicorn"]


def setting(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    section: str,
    default_factory: Callable[[], Any] | None = None,
    default_doc: str | None = None,
    min: float | None = None,
    max: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    unit: str = "",
    octal: bool = False,
    positional: bool = False,
    false_is_empty: bool = False,
    aliases: tuple[str, ...] = (),
    const: Any = None,
) -> Any:
    """Declare one setting as a dataclass field (see the module docstring). `aliases`:
    more command-line flags for it (gunicorn's spellings); `const`: the value of the flag
    given without one (gunicorn's --proxy-protocol)."""
    meta: SettingMeta = {
        "aliases": aliases,
        "const": const,
        "doc": doc,
        "section": section,
        "min": min,
        "max": max,
        "check": check,
        "unit": unit,
        "octal": octal,
        "positional": positional,
        "default_doc": default_doc,
        "false_is_empty": false_is_empty,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Config:
    # [app]
    app: str | None = setting(
        None,
        "The WSGI app as MODULE:NAME or MODULE:FACTORY(); unset serves the built-in demo.",
        section="app", check=check_app, positional=True, aliases=("--app",),
    )
    preload_app: bool = setting(
        False, "Import the app in the master before forking (shares memory, no reload of code).",
        section="app", aliases=("--preload",),
    )
    gc_freeze: bool = setting(
        False, "With preload_app: gc.freeze() after loading, so the app's objects stay "
        "shared between workers (copy-on-write).", section="app",
    )
    pythonpath: tuple[str, ...] = setting(
        (), "Directories put in front of sys.path before the app is imported.", section="app",
    )
    chdir: str = setting(
        "", "Change to this directory before the app is imported (relative paths in the "
        "config are then relative to it); empty: stay where started.", section="app",
        check=lambda v: None if v == "" or os.path.isdir(v) else "the directory does not exist",
    )
    env: tuple[str, ...] = setting(
        (), "Environment variables set before the app is imported: KEY=VALUE, repeatable.",
        section="app", aliases=("-e",),
        check=lambda v: None if all("=" in x and x.split("=", 1)[0] for x in v)
        else "each entry is KEY=VALUE",
    )
    reload: bool = setting(
        False, "Development only: restart the workers when a Python file of the app (or one "
        "of reload_extra_files) changes.", section="app",
    )
    reload_extra_files: tuple[str, ...] = setting(
        (), "With reload: more files to watch (templates, config files).", section="app",
        aliases=("--reload-extra-file",),
    )
    hooks: str = setting(
        "", "A module whose functions named like gunicorn's server hooks (on_starting, "
        "post_fork, pre_request, worker_exit...) are called; a Python config file's own "
        "functions are taken too.", section="app",
    )
    root_path: str = setting(
        "", "SCRIPT_NAME: the URL prefix the app is mounted under (for example /api).",
        section="app",
        check=lambda v: None if v == "" or (v.startswith("/") and not v.endswith("/"))
        else "empty, or a path that starts with / and does not end with /",
    )
    # [listen]
    bind: tuple[str, ...] = setting(
        ("127.0.0.1:8000",),
        "Addresses to listen on: HOST:PORT, [IPV6]:PORT or unix:/PATH; repeat for several.",
        section="listen", check=check_bind, aliases=("-b",),
    )
    backlog: int = setting(2048, "Listen queue length per socket.", section="listen",
                           min=1, max=65535)
    defer_accept: bool = setting(
        True, "Wake a worker for a new TCP connection only once its first bytes have "
        "arrived (TCP_DEFER_ACCEPT, Linux): the worker that accepts it can serve it at "
        "once, so connections go to workers with a free thread. A client that connects and "
        "stays silent is handed over after about a second and then held to header_timeout.",
        section="listen",
    )
    unix_socket_mode: int = setting(
        0o660, "Permission bits of UNIX socket files (octal).", section="listen",
        octal=True, min=0, max=0o777,
    )
    unix_socket_owner: str = setting(
        "", "Owner of UNIX socket files (a user name or uid; empty: the server's user).",
        section="listen",
    )
    unix_socket_group: str = setting(
        "", "Group of UNIX socket files (a group name or gid; empty: the server's group).",
        section="listen",
    )
    unix_socket_trusted: bool = setting(
        True, "Trust forwarded headers from peers on UNIX-socket listeners (a proxy on "
        "this machine, allowed by the socket file's permissions).", section="listen",
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"), "Proxies whose X-Forwarded-* and Forwarded headers are "
        "believed: addresses or CIDR ranges, or * for every peer (dangerous); from anyone "
        "else those headers are removed.", section="listen", check=check_allow_ips,
    )
    forwarded_trusted_hops: int = setting(
        0, "0: the client is the right-most X-Forwarded-For address not in "
        "forwarded_allow_ips. N: it is the N-th address from the right (when your N proxies "
        "have addresses you cannot list, as with some cloud load balancers).",
        section="listen", min=0, max=32,
    )
    proxy_protocol: ProxyProtocol = setting(
        "off", "Expect a PROXY protocol header (HAProxy, AWS NLB...) naming the client: "
        "off, v1, v2 or auto.", section="listen", const="auto",
    )
    proxy_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"), "Peers allowed to send a PROXY header (addresses, CIDR "
        "ranges or *); with proxy_protocol on, any other peer is disconnected.",
        section="listen", check=check_allow_ips, aliases=("--proxy-allow-from",),
    )
    # [workers]
    workers: int = setting(
        doc="Worker processes. Default: the CPUs this process may use (affinity, cgroup quota).",
        section="workers", default_factory=available_cpus, default_doc="CPUs available",
        min=1, max=1024, aliases=("-w",),
    )
    threads: int = setting(
        8, "Threads per worker that run the app (each serves one request at a time).",
        section="workers", min=1, max=1024,
    )
    http_engine: HttpEngine = setting(
        "auto", "The request path: native (the compiled core: non-blocking system calls "
        "keep the GIL, fewer thread hand-offs), python (the reference), or auto (native "
        "when it was built, else python; the log says which and why).", section="workers",
    )
    timeout: float = setting(
        30 * SECONDS,
        "A worker silent for this long (no heartbeat) is killed and replaced; one whose "
        "every thread has made no progress for this long is retired and replaced. One long "
        "request among free threads is not cut short (see request_timeout). 0: never "
        "(gunicorn's meaning).", section="workers", unit="s", min=0, max=86400,
        aliases=("-t",),
    )
    request_timeout: float = setting(
        0, "A request running longer is given up (uWSGI's harakiri): its thread's stack is "
        "logged, its client gets 504 if no response has begun, and the worker is retired "
        "gracefully to win the thread back (0: off).",
        section="workers", unit="s", min=0, max=86400,
    )
    graceful_timeout: float = setting(
        30 * SECONDS, "On a graceful stop, how long in-flight requests may run before a kill.",
        section="workers", unit="s", min=0, max=86400,
    )
    max_requests: int = setting(
        0, "Recycle a worker after it has served this many requests (0: never).",
        section="workers", min=0,
    )
    max_requests_jitter: int = setting(
        0, "Add a random 0..N to max_requests per worker so workers never recycle together.",
        section="workers", min=0,
    )
    max_worker_memory: int = setting(
        0, "Recycle a worker (gracefully) whose memory stays above this many MiB for "
        "memory_samples checks in a row (0: never).", section="workers", unit="MiB", min=0,
    )
    memory_metric: MemoryMetric = setting(
        "rss", "What max_worker_memory measures: rss, or uss (memory unique to the worker, "
        "dearer to read).", section="workers",
    )
    memory_samples: int = setting(
        3, "Consecutive one-second samples over max_worker_memory before recycling.",
        section="workers", min=1, max=600,
    )
    max_worker_lifetime: float = setting(
        0, "Recycle a worker after this long, plus up to 10% at random (0: never).",
        section="workers", unit="s", min=0,
    )
    shutdown_delay: float = setting(
        0, "On SIGTERM, keep serving this long before draining (for load balancers to "
        "notice the server is going).", section="workers", unit="s", min=0, max=3600,
    )
    worker_connections: int = setting(
        0, "Most connections a worker holds open; beyond that new ones wait in the "
        "listen backlog. 0: as many as the open-files limit leaves room for (that limit "
        "less 64 for the worker's own files).", section="workers", min=0, max=10_000_000,
    )
    max_open_files: int = setting(
        0, "At start, raise the soft limit on open files (RLIMIT_NOFILE; each connection "
        "is one) to this. 0: as high as the hard limit allows (at most 1048576).",
        section="workers", min=0, max=1 << 24,
    )
    # [http]
    keepalive: float = setting(
        5 * SECONDS, "How long an idle keep-alive connection is kept open (0 disables keep-alive).",
        section="http", unit="s", min=0, max=3600, aliases=("--keep-alive",),
    )
    header_timeout: float = setting(
        10 * SECONDS, "Time a client has to send a complete request head once it has begun.",
        section="http", unit="s", min=0.1, max=3600,
    )
    body_timeout: float = setting(
        30 * SECONDS, "Longest wait for the next bytes of a request body the app is reading.",
        section="http", unit="s", min=0.1, max=3600,
    )
    send_timeout: float = setting(
        30 * SECONDS, "Longest wait for a client to accept more response bytes.",
        section="http", unit="s", min=0.1, max=3600,
    )
    max_keepalive_requests: int = setting(
        1000, "Requests served on one connection before it is closed (0: no limit).",
        section="http", min=0,
    )
    lingering_time: float = setting(
        30 * SECONDS, "When prefork closes a connection the client may still be writing to "
        "(a refusal, max_keepalive_requests, a stop), it shuts its sending side and reads "
        "and drops what still comes for at most this long, so that the client reads the "
        "whole response instead of a reset (nginx's lingering_time; 0: close at once).",
        section="http", unit="s", min=0, max=3600,
    )
    lingering_timeout: float = setting(
        5 * SECONDS, "While lingering, close once nothing has come for this long "
        "(nginx's lingering_timeout).", section="http", unit="s", min=0.01, max=3600,
    )
    lingering_bytes: int = setting(
        16 << 20, "While lingering, close once this many bytes were dropped.",
        section="http", unit="bytes", min=0,
    )
    limit_request_line: int = setting(
        8190, "Longest request line in bytes; longer gets 414.", section="http",
        unit="bytes", min=64, max=1 << 20,
    )
    limit_request_fields: int = setting(
        100, "Most header fields in a request; more gets 431.", section="http", min=1, max=10000,
    )
    limit_request_field_size: int = setting(
        8190, "Longest header field (name and value) in bytes; longer gets 431.",
        section="http", unit="bytes", min=64, max=1 << 20,
        aliases=("--limit-request-field_size",),
    )
    limit_request_body: int = setting(
        100 * 1024 * 1024,
        "Largest request body in bytes (Content-Length or de-chunked); larger gets 413. "
        "0: no limit.", section="http", unit="bytes", min=0,
    )
    limit_chunk_framing: int = setting(
        8192, "Most bytes of chunk framing (size lines, extensions, trailers) in a row "
        "without body data; more gets 400.", section="http", unit="bytes", min=64,
        max=1 << 20,
    )
    # [process]
    pidfile: str = setting("", "Write the master's pid to this file (empty: none).",
                           section="process", aliases=("-p", "--pid"))
    user: str = setting(
        "", "Run the workers (and the master, once the sockets are bound) as this user: a "
        "name or uid (empty: stay who started it).", section="process", aliases=("-u",),
    )
    group: str = setting(
        "", "Run as this group: a name or gid (empty: the user's group).", section="process",
        aliases=("-g",),
    )
    umask: str = setting(
        "", "File mode creation mask, in octal (for example 027); empty: inherited.",
        section="process", aliases=("-m",),
        check=lambda v: None if v == "" or re.fullmatch(r"0?o?[0-7]{1,4}", v)
        else "an octal mask such as 022 or 0o027, or empty",
    )
    # [logging]
    loglevel: LogLevel = setting("info", "Error-log level.", section="logging",
                                 aliases=("--log-level",))
    access_log: str = setting(
        "", "Access log: - for stdout, a file path (reopened on SIGUSR1), or false for none.",
        section="logging", false_is_empty=True, aliases=("--access-logfile",),
    )
    access_log_format: str = setting(
        "combined", "common, combined, json, or Apache atoms such as "
        "'%h %t \"%r\" %s %b %D %{User-Agent}i', or gunicorn's %(h)s atoms.",
        section="logging", check=check_log_format, aliases=("--access-logformat",),
    )
    errorlog: str = setting(
        "-", "Where the error log goes: - for stderr, or a file path (reopened on SIGUSR1).",
        section="logging", aliases=("--error-logfile", "--log-file"),
    )
    logconfig_dict: str = setting(
        "", "A logging configuration for logging.config.dictConfig, as JSON text (in a "
        "gunicorn Python config, the dict itself). Its loggers 'gunicorn.error' and "
        "'gunicorn.access' receive prefork's error and access lines.", section="logging",
        check=check_json_object,
    )
    logconfig: str = setting(
        "", "An ini file for logging.config.fileConfig (gunicorn's --log-config); as "
        "logconfig_dict, its 'gunicorn.error' and 'gunicorn.access' get prefork's lines.",
        section="logging", aliases=("--log-config",),
    )
    logconfig_json: str = setting(
        "", "A JSON file for logging.config.dictConfig (gunicorn's --log-config-json).",
        section="logging", aliases=("--log-config-json",),
    )
    error_log_format: ErrorLogFormat = setting(
        "prefork", "The error log's line: prefork's ([time] [pid] [master|worker N] [LEVEL] "
        "message) or gunicorn's (time [pid] [LEVEL] message, what gunicorn's log parsers "
        "expect; the default with a gunicorn Python config).", section="logging",
    )
    capture_output: bool = setting(
        False, "Send the app's stdout and stderr (print, tracebacks of threads) to "
        "errorlog's file too (gunicorn's capture_output; nothing changes when errorlog is "
        "stderr).", section="logging",
    )

    # [admin]
    admin_bind: str = setting(
        "", "Admin listener for /metrics, /healthz, /readyz and /status, served by the master "
        "(for example 127.0.0.1:9100); empty: off.", section="admin",
        check=lambda v: None if v == "" else check_bind((v,)),
    )

    # [[static]]
    static: tuple[StaticMount, ...] = setting(
        (), "Static files served before the app: [[static]] tables with prefix, directory, "
        "and optionally cache_control, index (index.html) and follow_symlinks (false); "
        "on the command line PREFIX=DIRECTORY.", section="static",
    )

    @property
    def head_limit_bytes(self) -> int:
        """Most bytes a request head may take before it is refused with 431."""
        return self.limit_request_line + self.limit_request_fields * (
            self.limit_request_field_size + 2) + 4


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Config)}
META: dict[str, SettingMeta] = {
    name: typing.cast(SettingMeta, f.metadata) for name, f in FIELDS.items()}
_TYPES: dict[str, Any] = typing.get_type_hints(Config)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def iter_settings() -> Iterator[dataclasses.Field[Any]]:
    return iter(dataclasses.fields(Config))


def _kind(name: str) -> Kind:
    tp = _TYPES[name]
    if typing.get_origin(tp) is Literal:
        return Kind.CHOICE
    if tp is int:
        return Kind.OCTAL if META[name]["octal"] else Kind.INT
    kinds: dict[Any, Kind] = {bool: Kind.SWITCH, float: Kind.FLOAT, str: Kind.TEXT,
                              str | None: Kind.OPTIONAL_TEXT, tuple[str, ...]: Kind.STRINGS,
                              tuple[StaticMount, ...]: Kind.MOUNTS}
    return kinds[tp]


KINDS: dict[str, Kind] = {name: _kind(name) for name in FIELDS}
CHOICES: dict[str, tuple[str, ...]] = {
    name: typing.get_args(_TYPES[name]) for name, kind in KINDS.items() if kind is Kind.CHOICE}

FlagKind = Literal["switch", "repeated", "value"]


def flag_kind(name: str) -> FlagKind:
    """How a setting's command-line flag takes its value: a switch (--x / --no-x), a
    repeatable flag (lists), or one value."""
    kind = KINDS[name]
    if kind is Kind.SWITCH:
        return "switch"
    if kind is Kind.STRINGS or kind is Kind.MOUNTS:
        return "repeated"
    return "value"


def type_text(name: str) -> str:
    """Human description of what a setting takes, used in errors and docs."""
    return describe_type(KINDS[name], META[name], CHOICES.get(name, ()))


def coerce(name: str, raw: object, source: str) -> Any:
    """Turn a raw value (a TOML value, or a string from the CLI or environment) into the
    setting's type, and validate it. Raises ConfigError naming key, value and what is allowed."""
    raw = normalise(name, raw)
    try:
        return convert(KINDS[name], raw, META[name], CHOICES.get(name, ()))
    except Refused as refused:
        raise ConfigError(name, raw if refused.value is None else refused.value,
                          refused.why or f"expected {type_text(name)}", source) from None


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into flat {setting: raw value}; unknown keys are errors."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config", source, "the config file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", source, f"the file is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key not in FIELDS:
            raise ConfigError(key, value, unknown_text(key, where), source)
        if key in flat:
            raise ConfigError(key, value, "the setting is given twice in the file", source)
        flat[key] = value

    for key, value in doc.items():
        if isinstance(value, dict):  # a table: it only groups (no setting is a table)
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, dict):
                    raise ConfigError(f"{key}.{sub_key}", sub_value,
                                      "tables nest one level at most", source)
                put(sub_key, sub_value, f"table [{key}]")
        else:
            put(key, value, "the top level")
    return flat


def unknown_text(name: str, where: str) -> str:
    """'unknown setting' with a way forward: gunicorn's name mapped, or a close match."""
    from prefork.gunicorn import suggest

    hint = suggest(name, FIELDS)
    return f"unknown setting in {where}" + (f"; {hint}" if hint else
                                            "; see prefork-serve --print-example-config")


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """PREFORK_* variables as {setting: text}; an unknown PREFORK_* name is an error."""
    found: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in ENV_INTERNAL:
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in FIELDS:
            raise ConfigError(name, value, unknown_text(name, f"environment variable {key}"))
        found[name] = value
    return found


def resolve(
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
    file_values: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    cmd_args: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: defaults (and gunicorn's environment variables, `defaults`) <
    file < GUNICORN_CMD_ARGS (`cmd_args`) < PREFORK_* environment < command line.
    `file_values` stand for a file already read (a Python config file), `path` names it."""
    values: dict[str, Any] = {}
    for name, raw in (defaults or {}).items():
        values[name] = coerce(name, raw, "environment (as gunicorn reads it)")
    if file_values is None and path is not None:
        file_values = read_file(path)
    for name, raw in (file_values or {}).items():
        values[name] = coerce(name, raw, str(path))
    for name, raw in (cmd_args or {}).items():
        values[name] = coerce(name, raw, "GUNICORN_CMD_ARGS " + flag_name(name))
    for name, raw in read_env(environ or {}).items():
        values[name] = coerce(name, raw, "environment " + env_name(name))
    for name, raw in (cli or {}).items():
        values[name] = coerce(name, raw, "command line " + flag_name(name))
    return Config(**values)
