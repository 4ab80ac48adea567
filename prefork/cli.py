"""`prefork-serve` (and `python -m prefork`): argv and the environment are read here only.

The command line is generated from the settings declared in config.py, so every setting
is a flag (`graceful_timeout` → `--graceful-timeout`) with the same validation as in the
file and the environment.

Exit statuses: 0 stopped normally; 2 bad command line or config; 3 cannot bind;
4 the app cannot be imported.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from prefork import __version__, config, config_text, gunicorn
from prefork.errors import AppLoadError, ConfigError
from prefork.hooks import Hooks
from prefork.messages import ExitStatus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefork-serve",
        usage="%(prog)s [OPTIONS] [APP]    or    %(prog)s status [-c FILE]",
        description="Serve a WSGI app with a prefork master, worker processes and thread pools.",
        epilog="Every setting can also be given in the config file and as PREFORK_<NAME> in "
        "the environment. Precedence: command line > environment > file > defaults. "
        "`prefork-serve status [-c FILE | --admin-bind HOST:PORT]` prints the running "
        "server's worker table.",
    )
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="TOML config file (*.toml), or a gunicorn-style Python config "
                        "(any other file, or python:MODULE); also PREFORK_CONFIG; without "
                        "either, ./gunicorn.conf.py if there is one")
    parser.add_argument("--check-config", action="store_true",
                        help="print the resolved settings, import the app, and exit (1 if "
                        "the app cannot be imported)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings and exit")
    parser.add_argument("--print-example-config", action="store_true",
                        help="print a config file with every setting and its default")
    parser.add_argument("-v", "--version", action="version", version=f"prefork {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in config.iter_settings():
        meta = config.META[field.name]
        section = meta["section"]
        if section not in groups:
            groups[section] = parser.add_argument_group(SECTIONS.get(section, section))
        group = groups[section]
        help_text = first_sentence(meta["doc"]) + (f" [{meta['unit']}]" if meta["unit"] else "")
        if field.default not in (None, "", (), False) and not meta["default_doc"]:
            help_text += f" (default: {config_text.format_value(field.name, field.default)})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS,
                                  "help": help_text}
        if meta["positional"]:
            group.add_argument(field.name, nargs="?", metavar="APP", **{
                k: v for k, v in kwargs.items() if k != "dest"})
            group.add_argument(*meta["aliases"], metavar="APP", **kwargs)
            continue
        flags = [*meta["aliases"], config.flag_name(field.name)]
        kind = config.flag_kind(field.name)  # from the declared type, not the help text
        if kind == "switch":
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind == "repeated":
            group.add_argument(*flags, action="append", metavar="VALUE", **kwargs)
        elif meta["const"] is not None:
            group.add_argument(*flags, nargs="?", const=meta["const"],
                               metavar=field.name.upper(), **kwargs)
        else:
            group.add_argument(*flags, metavar=field.name.upper(), **kwargs)
    return parser


# --help's groups, in the order settings are declared (as gunicorn's sections).
SECTIONS = {"app": "the app", "listen": "listening", "workers": "workers and supervision",
            "http": "HTTP: timeouts and limits", "process": "the process",
            "logging": "logging", "admin": "the admin listener", "static": "static files"}


def first_sentence(doc: str) -> str:
    """The first sentence of a setting's documentation: --help stays short (the whole
    text is in config.toml and --print-example-config)."""
    end = doc.find(". ")
    return doc if end < 0 else doc[:end + 1]


def parse(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None,
          ) -> tuple[argparse.Namespace, config.Config, Hooks]:
    """The command line and environment (and the config file they name) resolved.

    Precedence, lowest first: defaults (gunicorn's environment variables among them:
    WEB_CONCURRENCY, FORWARDED_ALLOW_IPS, SCRIPT_NAME), the config file (-c FILE,
    PREFORK_CONFIG, or ./gunicorn.conf.py as gunicorn reads it), GUNICORN_CMD_ARGS, the
    PREFORK_* environment, the command line."""
    parser = build_parser()
    known = {flag: action.nargs != 0 for flag, action in parser._option_string_actions.items()}
    argv = gunicorn.translate_flags(list(sys.argv[1:] if argv is None else argv), known)
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    cmd_args: dict[str, Any] = {}
    if env.get(gunicorn.CMD_ARGS_ENV):
        extra = gunicorn.translate_flags(shlex.split(env[gunicorn.CMD_ARGS_ENV]), known,
                                         gunicorn.CMD_ARGS_ENV)
        env_args = parser.parse_args(extra)
        cmd_args = _given(env_args)
        if args.config is None:
            args.config = env_args.config
    defaults = gunicorn.environ_defaults(env)
    path = args.config or env.get(config.ENV_PREFIX + "CONFIG")
    if not path and os.path.isfile(gunicorn.DEFAULT_CONFIG):
        path = gunicorn.DEFAULT_CONFIG  # gunicorn reads it when no -c is given
        gunicorn.note(f"reading ./{path}, as gunicorn does (no -c given)")
    file_values: dict[str, Any] | None = None
    hooks = Hooks()
    if path and is_python_config(path):
        file_values, hook_fns, warnings = gunicorn.read_python_config(path, config.FIELDS)
        for warning in warnings:
            print(f"prefork-serve: warning: {warning}", file=sys.stderr)
        hooks = Hooks(hook_fns)
        defaults.setdefault("error_log_format", "gunicorn")  # what its log parsers expect
    cfg = config.resolve(_given(args), env, path, file_values, defaults=defaults,
                         cmd_args=cmd_args)
    return args, cfg, hooks


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on a command line (argparse's namespace; lists as tuples)."""
    values: dict[str, Any] = {}
    for field in config.iter_settings():
        if field.name in vars(args):
            raw = getattr(args, field.name)
            values[field.name] = tuple(raw) if isinstance(raw, list) else raw
    return values


def is_python_config(path: str) -> bool:
    """A gunicorn-style Python config: `python:MODULE`, a `.py` file, or any file that is
    not `.toml` and does not read as TOML (gunicorn's -c takes any name)."""
    if path.startswith("python:") or path.endswith(".py"):
        return True
    if path.endswith(".toml"):
        return False
    try:
        with open(path, "rb") as fh:
            tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return os.path.isfile(path)
    return False


def status(argv: Sequence[str]) -> int:
    """`prefork-serve status [-c config.toml] [--admin-bind HOST:PORT]`: the worker table,
    from the running server's admin listener."""
    import http.client
    import json

    try:
        _, cfg, _hooks = parse(list(argv))
    except ConfigError as exc:
        print(f"prefork-serve: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    if not cfg.admin_bind:
        print("prefork-serve status: no admin listener configured (set admin_bind, or pass "
              "--admin-bind HOST:PORT)", file=sys.stderr)
        return ExitStatus.USAGE
    host, _, port = cfg.admin_bind.rpartition(":")
    try:
        conn = http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port), timeout=5)
        conn.request("GET", "/status")
        info = json.loads(conn.getresponse().read())
    except (OSError, ValueError) as exc:
        print(f"prefork-serve status: cannot reach {cfg.admin_bind}: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
    print(f"prefork {info['version']}, master pid {info['pid']}: {info['target']} worker(s) x "
          f"{info['threads']} thread(s); {info['requests_total']} requests; "
          f"{info['in_flight']} in flight, {info['connections']} connections"
          + ("; DRAINING" if info["draining"] else ""))
    header = ("worker", "pid", "state", "age s", "requests", "busy", "conns", "RSS MiB",
              "CPU s", "last restart")
    rows = [(w["number"], w["pid"], w["state"], f"{w['age_s']:.0f}", w["requests"],
             w["busy_threads"], w["connections"], f"{w['rss'] / 2**20:.1f}",
             f"{w['cpu']:.1f}", w["last_restart_cause"] or "-") for w in info["workers"]]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["status"]:
        try:
            return status(args_list[1:])
        except BrokenPipeError:  # `prefork-serve status | head -1`: the reader left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return ExitStatus.OK
    try:
        args, cfg, hooks = parse(argv)
    except ConfigError as exc:
        print(f"prefork-serve: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    if args.print_example_config:
        sys.stdout.write(config_text.example_toml())
        return ExitStatus.OK
    if args.print_config or args.check_config:
        print(config_text.describe(cfg))
        if args.check_config:
            return check_app(cfg)
        return ExitStatus.OK
    from prefork.startup import serve

    argv_list = list(sys.argv if argv is None else ["prefork-serve", *argv])
    return serve(cfg, reload_config=lambda: parse(argv_list[1:])[1], argv=argv_list,
                 hooks=hooks)


def check_app(cfg: config.Config) -> int:
    """--check-config: import the app (and the hooks module) as a worker would, nothing
    more; 0 if it loads, 1 with the error if not (a deploy gate, as in gunicorn)."""
    from prefork import process
    from prefork.hooks import from_module
    from prefork.loader import load_app

    try:
        process.prepare(cfg)
        if cfg.hooks:
            from_module(cfg.hooks)
        load_app(cfg.app, cfg.pythonpath)
    except (AppLoadError, ConfigError) as exc:
        print(f"prefork-serve: error: {exc}", file=sys.stderr)
        return ExitStatus.ERROR
    print(f"# app {cfg.app or 'prefork.demo:app (built-in demo)'} imported", file=sys.stderr)
    return ExitStatus.OK
