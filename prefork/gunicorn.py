"""What gunicorn calls things: its setting names, its flags prefork does not have, and its
Python config files. Read by the CLI and the config loader, in the master, at start-up and
on reload.

A gunicorn user's command line and `gunicorn.conf.py` should start prefork unchanged: the
settings both servers have are mapped to prefork's names, server hooks are taken, and
whatever prefork does not do is refused with one line that says so and what to do
instead (never silently ignored).
"""

from __future__ import annotations

import difflib
import runpy
from collections.abc import Callable, Iterable
from typing import Any

from prefork.errors import ConfigError

# gunicorn setting name -> prefork's, where they differ (the same names need no entry).
RENAMED: dict[str, str] = {
    "accesslog": "access_log",
    "access_log_format": "access_log_format",
    "errorlog": "errorlog",
    "preload": "preload_app",
    "keep_alive": "keepalive",
    "pid": "pidfile",
    "log_level": "loglevel",
    "raw_env": "env",
    "forwarded_allow_ips": "forwarded_allow_ips",
    "proxy_allow_ips": "proxy_allow_ips",
    "limit_request_line": "limit_request_line",
    "limit_request_fields": "limit_request_fields",
    "limit_request_field_size": "limit_request_field_size",
    "wsgi_app": "app",
    "reload_extra_files": "reload_extra_files",
}

# gunicorn settings prefork does not have, with what to do instead.
UNSUPPORTED: dict[str, str] = {
    "worker_class": "prefork has one worker type (processes with thread pools, like "
                    "gthread); -k sync and -k gthread are accepted, async workers are not",
    "certfile": "terminate TLS at the reverse proxy (deploy/nginx)",
    "keyfile": "terminate TLS at the reverse proxy (deploy/nginx)",
    "ca_certs": "terminate TLS at the reverse proxy (deploy/nginx)",
    "ssl_version": "terminate TLS at the reverse proxy (deploy/nginx)",
    "cert_reqs": "terminate TLS at the reverse proxy (deploy/nginx)",
    "ciphers": "terminate TLS at the reverse proxy (deploy/nginx)",
    "do_handshake_on_connect": "terminate TLS at the reverse proxy (deploy/nginx)",
    "suppress_ragged_eofs": "terminate TLS at the reverse proxy (deploy/nginx)",
    "daemon": "run it under systemd (deploy/systemd) or another supervisor",
    "statsd_host": "scrape /metrics from the admin listener (admin_bind) instead",
    "statsd_prefix": "scrape /metrics from the admin listener (admin_bind) instead",
    "dogstatsd_tags": "scrape /metrics from the admin listener (admin_bind) instead",
    "spew": "use py-spy or the stuck-request stacks in the error log",
    "syslog": "log to stderr and let systemd-journald or your collector take it",
    "syslog_addr": "log to stderr and let systemd-journald or your collector take it",
    "syslog_prefix": "log to stderr and let systemd-journald or your collector take it",
    "syslog_facility": "log to stderr and let systemd-journald or your collector take it",
    "reuse_port": "prefork's workers share one listening socket; run more instances "
                  "behind the proxy instead",
    "reload_engine": "prefork watches files itself (inotify-free polling, once a second)",
    "paste": "point app at the WSGI callable (MODULE:NAME)",
    "worker_tmp_dir": "not needed: workers prove liveness over a pipe, not a file",
    "initgroups": "prefork always sets the user's supplementary groups",
    "tmp_upload_dir": "not used",
    "secure_scheme_headers": "X-Forwarded-Proto and Forwarded are read from "
                             "forwarded_allow_ips",
    "strip_header_spaces": "never: whitespace before a colon is a 400 (RFC 9112 §5)",
    "permit_unconventional_http_method": "every method llhttp can frame reaches the app",
    "casefold_http_method": "methods are case-sensitive (RFC 9110 §9.1)",
    "proc_name": "processes are titled 'prefork: master' and 'prefork: worker N'",
    "default_proc_name": "processes are titled 'prefork: master' and 'prefork: worker N'",
    "capture_output": "the app's stdout and stderr go where the server's go",
    "logger_class": "configure logging through the standard logging module",
    "logconfig": "configure logging through the standard logging module",
    "logconfig_dict": "configure logging through the standard logging module",
    "logconfig_json": "configure logging through the standard logging module",
    "disable_redirect_access_to_syslog": "no syslog support",
    "enable_stdio_inheritance": "stdio is always inherited",
    "print_config": "use prefork-serve --print-config",
    "check_config": "use prefork-serve --check-config",
    "sendfile": "prefork always uses sendfile for wsgi.file_wrapper",
}

# gunicorn command-line flags prefork does not have: flag -> the setting it sets.
UNSUPPORTED_FLAGS: dict[str, str] = {
    "-k": "worker_class", "--worker-class": "worker_class",
    "--certfile": "certfile", "--keyfile": "keyfile", "--ca-certs": "ca_certs",
    "--ssl-version": "ssl_version", "--cert-reqs": "cert_reqs", "--ciphers": "ciphers",
    "-D": "daemon", "--daemon": "daemon",
    "--statsd-host": "statsd_host", "--statsd-prefix": "statsd_prefix",
    "--spew": "spew", "--log-syslog": "syslog", "--log-syslog-to": "syslog_addr",
    "--reuse-port": "reuse_port", "--reload-engine": "reload_engine", "--paste": "paste",
    "--worker-tmp-dir": "worker_tmp_dir", "-n": "proc_name", "--name": "proc_name",
    "--log-config": "logconfig", "--logger-class": "logger_class",
    "--capture-output": "capture_output",
}
# Worker classes that mean what prefork does anyway.
SAME_WORKER_CLASSES = frozenset({"sync", "gthread"})

# Server hooks, with gunicorn's names and the arguments prefork passes.
HOOKS: dict[str, str] = {
    "on_starting": "(server): in the master before anything starts; raising aborts start-up",
    "on_reload": "(server): in the master on SIGHUP, before the new workers start",
    "when_ready": "(server): in the master once the first full set of workers is ready",
    "pre_fork": "(server, worker): in the master just before a worker is forked",
    "post_fork": "(server, worker): in the new worker, before the app is imported",
    "post_worker_init": "(worker): in the worker once the app is loaded",
    "worker_int": "(worker): in the worker on SIGINT or SIGQUIT",
    "worker_abort": "(worker): in the worker when the master stops it for a stuck request",
    "pre_request": "(worker, req): in the pool thread before the app runs",
    "post_request": "(worker, req, environ, resp): after the response",
    "child_exit": "(server, worker): in the master after a worker exited",
    "worker_exit": "(server, worker): in the worker just before it exits",
    "nworkers_changed": "(server, new_value, old_value): after TTIN/TTOU or a reload",
    "on_exit": "(server): in the master just before it exits",
}


def suggest(name: str, known: Iterable[str]) -> str:
    """What to say about an unknown setting `name`: gunicorn's spelling mapped, a close
    match, or nothing."""
    if name in RENAMED and RENAMED[name] != name:
        return f"gunicorn calls it {name!r}; prefork calls it {RENAMED[name]!r}"
    if name in UNSUPPORTED:
        return f"gunicorn's {name!r} is not supported: {UNSUPPORTED[name]}"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


def check_flags(argv: list[str]) -> None:
    """Refuse gunicorn flags prefork does not have, with what to do instead; -k sync and
    -k gthread are accepted (and dropped) with a note on stderr."""
    import sys

    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in ("-k", "--worker-class"):
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            if value.split(".")[-1].lower().removesuffix("worker") in SAME_WORKER_CLASSES:
                print(f"prefork-serve: note: {flag} {value}: prefork's workers are processes "
                      "with thread pools (gthread); the flag is not needed", file=sys.stderr)
                del argv[i:i + (1 if eq else 2)]
                continue
        if flag in UNSUPPORTED_FLAGS or (flag.startswith("-k") and len(flag) > 2):
            name = UNSUPPORTED_FLAGS.get(flag, "worker_class")
            raise ConfigError(name, arg, f"gunicorn's {flag} is not supported: "
                              f"{UNSUPPORTED[name]}")
        i += 1


def read_python_config(path: str, known: Iterable[str]) -> tuple[
        dict[str, Any], dict[str, Callable[..., Any]], list[str]]:
    """Execute a gunicorn-style Python config file (it is the user's own code, as gunicorn
    runs it) and return ({setting: raw value}, {hook name: callable}, warnings).

    A gunicorn setting prefork does not support is refused (TLS settings silently dropped
    would serve plain HTTP). Other unknown lower-case names get a warning with a
    suggestion (gunicorn ignores them silently); UPPER_CASE names, functions, classes and
    modules are the file's own and are left alone."""
    known = set(known)
    try:
        namespace = runpy.run_path(path)
    except FileNotFoundError:
        raise ConfigError("config", path, "the config file does not exist") from None
    except Exception as exc:  # the user's code failed: say where
        raise ConfigError("config", path, f"running the Python config file failed: "
                          f"{type(exc).__name__}: {exc}") from None
    values: dict[str, Any] = {}
    hooks: dict[str, Callable[..., Any]] = {}
    warnings: list[str] = []
    for name, value in namespace.items():
        if name.startswith("_") or name.isupper() or _is_module_or_import(value):
            continue
        if name in HOOKS:
            if not callable(value):
                raise ConfigError(name, value, "a server hook must be callable", path)
            hooks[name] = value
            continue
        if name == "worker_class" and str(value).split(".")[-1].lower().removesuffix(
                "worker") in SAME_WORKER_CLASSES:
            continue
        target = RENAMED.get(name, name)
        if target not in known:
            if callable(value):
                continue  # a helper function of the file's own
            if name in UNSUPPORTED:
                raise ConfigError(name, value, suggest(name, known), path)
            hint = suggest(name, known)
            warnings.append(f"{path}: {name!r} is not a prefork setting; ignored"
                            + (f" ({hint})" if hint else ""))
            continue
        values[target] = _from_python(target, value)
    return values, hooks, warnings


def _is_module_or_import(value: object) -> bool:
    import types

    return isinstance(value, types.ModuleType) or (
        isinstance(value, type) and value.__module__ != "__main__")


def _from_python(name: str, value: Any) -> Any:
    """gunicorn's Python values in prefork's raw forms (lists for lists, and so on)."""
    if name in ("bind", "env", "forwarded_allow_ips", "proxy_allow_ips", "pythonpath",
                "reload_extra_files") and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if name == "umask" and isinstance(value, int):
        return oct(value)
    if name in ("access_log", "errorlog") and value is None:
        return ""
    if isinstance(value, tuple):
        return list(value)
    return value

