"""Start-up, in the master process before supervision begins: the error log, the
process's own settings (chdir, env, umask), the hooks module and on_starting, the app
preloaded (and gc.freeze) if asked; then a Master runs until it stops. Every way start-up
can fail ends in its exit status (messages.ExitStatus) and one line in the log.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable

from prefork import engine_choice, process
from prefork import log as logsetup
from prefork.config import Config
from prefork.errors import AppLoadError, ConfigError
from prefork.hooks import Hooks, ServerView
from prefork.master import Master
from prefork.messages import ExitStatus
from prefork.sockets import BindError

log = logging.getLogger("prefork.master")


def serve(config: Config, reload_config: Callable[[], Config] | None = None,
          argv: list[str] | None = None, hooks: Hooks | None = None) -> int:
    """Run a master until it stops; returns the process exit status."""
    try:
        logsetup.from_config(config)
    except OSError as exc:
        print(f"prefork-serve: error: cannot open errorlog {config.errorlog!r}: {exc}",
              file=sys.stderr)
        return ExitStatus.USAGE
    except (ValueError, TypeError, AttributeError, ImportError, KeyError) as exc:
        print(f"prefork-serve: error: the logging configuration (logconfig_dict, logconfig, "
              f"logconfig_json) cannot be applied: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    process.prepare(config)  # chdir, env, umask: before anything is imported
    try:
        process.raise_open_files(config)
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-files limit: %s", exc)
    log.info("each worker holds up to %d connections",
             process.connections_per_worker(config, say=True))
    hooks = hooks or Hooks()
    try:
        if config.hooks:
            from prefork.hooks import from_module

            hooks = Hooks({**hooks.fns, **from_module(config.hooks)})
        hooks.call("on_starting", ServerView(os.getpid(), config, config.workers))
    except ConfigError as exc:
        log.error("%s", exc)
        return ExitStatus.USAGE
    except Exception:
        log.exception("server hook on_starting raised; not starting")
        return ExitStatus.USAGE
    try:
        chosen = engine_choice.choose(config.http_engine)
    except ConfigError as exc:
        log.error("%s", exc)
        return ExitStatus.USAGE
    # Falling back from auto to the Python path costs half the speed: a warning, once.
    log.log(logging.WARNING if chosen.fallback else logging.INFO, "request path: %s (%s)",
            chosen.name, chosen.why)
    if config.reload:
        log.warning("reload is on: workers restart when the app's files change. This is a "
                    "development feature; do not use it in production")
    app = None
    if config.preload_app:
        from prefork.loader import load_app

        try:
            app = load_app(config.app, config.pythonpath)
        except AppLoadError as exc:
            log.error("%s", exc)
            return ExitStatus.APP_LOAD
        if config.gc_freeze:
            gc.collect()
            gc.freeze()  # keep the app's objects out of collections: pages stay shared
    try:
        return Master(config, app, reload_config, argv or [], hooks=hooks).run()
    except BindError as exc:
        log.error("%s", exc)
        return ExitStatus.BIND
    except ConfigError as exc:  # user or group cannot be taken
        log.error("%s", exc)
        return ExitStatus.USAGE
