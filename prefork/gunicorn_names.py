"""Every setting gunicorn 27 has, and what prefork does with it: the one table from which
a gunicorn config file, command line and environment are read (gunicorn.py).

Each name is one of:

    mapped       prefork has the setting (its own name, or `RENAMED`)
    hook         a server hook (`HOOKS`)
    no effect    accepted whatever its value, said once at info (`NO_EFFECT`): it asks
                 for something prefork's design makes moot
    at default   accepted at gunicorn's default, which asks for nothing (`AT_DEFAULT`);
                 any other value is refused in one line saying what to do instead

`tests/unit/test_gunicorn_names.py` holds the table against gunicorn itself: every
setting of the installed gunicorn is in exactly one class, and each default here is
gunicorn's. Read by the master's start-up (and on reload); declarations only.
"""

from __future__ import annotations

from dataclasses import dataclass

# gunicorn setting name -> prefork's, where they differ (the same names need no entry).
RENAMED: dict[str, str] = {
    "accesslog": "access_log",
    "preload": "preload_app",
    "keep_alive": "keepalive",
    "pid": "pidfile",
    "log_level": "loglevel",
    "raw_env": "env",
    "wsgi_app": "app",
}

_TLS = "terminate TLS at the reverse proxy (deploy/nginx)"
_STATSD = "scrape /metrics from the admin listener (admin_bind) instead"
_SYSLOG = "log to stderr and let systemd-journald or your collector take it"
_DIRTY = ("dirty workers (a separate pool for long tasks) are not supported: run the "
          "long tasks in a task queue")
_ASGI = "prefork serves WSGI apps; ASGI is not supported"
_H2 = "HTTP/2 is for the reverse proxy in front of prefork (deploy/nginx)"

# gunicorn settings that ask for nothing prefork's design does not already give:
# accepted with any value. name -> why.
NO_EFFECT: dict[str, str] = {
    "worker_tmp_dir": "workers prove liveness over a pipe, not a file",
    "tmp_upload_dir": "request bodies are streamed to the app, never stored",
    "proc_name": "processes are titled 'prefork: master' and 'prefork: worker N'",
    "default_proc_name": "processes are titled 'prefork: master' and 'prefork: worker N'",
    "initgroups": "prefork always sets the user's supplementary groups",
    "sendfile": "wsgi.file_wrapper always uses sendfile",
    "reload_engine": "prefork polls the app's files once a second",
    "enable_stdio_inheritance": "stdio is always inherited",
    "enable_backlog_metric": "the admin listener's /metrics reports the backlog",
    "http_parser": "prefork parses requests with llhttp",
    "uwsgi_allow_ips": "prefork speaks HTTP only (see protocol)",
    "websocket_max_message_size": "prefork serves no websockets itself",
    "check_config": "use prefork-serve --check-config",
    "print_config": "use prefork-serve --print-config",
    "control_socket": "prefork has no control socket (gunicorn 25+ makes one by default): "
                      "signals, and the admin listener's /status",
    "control_socket_mode": "prefork has no control socket",
    "forwarder_headers": "a header name with '_' is always dropped, whoever sends it; "
                         "X-Forwarded-* and Forwarded are read from forwarded_allow_ips",
    "control_socket_disable": "prefork has no control socket",
    "dirty_threads": _DIRTY,
    "dirty_timeout": _DIRTY,
    "dirty_graceful_timeout": _DIRTY,
}


@dataclass(frozen=True)
class AtDefault:
    """A setting prefork cannot honour: accepted at `defaults` (gunicorn's, and the other
    spellings of "nothing" a config may use), refused otherwise with `instead`."""

    defaults: tuple[object, ...]
    instead: str


_OFF: tuple[object, ...] = (None, False, "", 0, (), [], {})
_SECURE_SCHEME_HEADERS = {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
                          "X-FORWARDED-SSL": "on"}

AT_DEFAULT: dict[str, AtDefault] = {
    "worker_class": AtDefault(("sync", "gthread"), "prefork has one worker type "
                              "(processes with thread pools, like gthread); async workers "
                              "are not supported"),
    "certfile": AtDefault(_OFF, _TLS), "keyfile": AtDefault(_OFF, _TLS),
    "ca_certs": AtDefault(_OFF, _TLS), "ciphers": AtDefault(_OFF, _TLS),
    "ssl_version": AtDefault((*_OFF, 2, "TLS", "TLSv1_2", "PROTOCOL_TLS",
                              "PROTOCOL_TLS_SERVER"), _TLS),
    "cert_reqs": AtDefault(_OFF, _TLS),
    "do_handshake_on_connect": AtDefault(_OFF, _TLS),
    "suppress_ragged_eofs": AtDefault((*_OFF, True), _TLS),
    "daemon": AtDefault(_OFF, "run it under systemd (deploy/systemd) or another supervisor"),
    "statsd_host": AtDefault(_OFF, _STATSD), "statsd_prefix": AtDefault(_OFF, _STATSD),
    "dogstatsd_tags": AtDefault(_OFF, _STATSD),
    "spew": AtDefault(_OFF, "use py-spy, or the stuck-request stacks in the error log"),
    "syslog": AtDefault(_OFF, _SYSLOG),
    "syslog_addr": AtDefault((*_OFF, "udp://localhost:514", "unix:///dev/log",
                              "unix:///var/run/syslog"), _SYSLOG),
    "syslog_prefix": AtDefault(_OFF, _SYSLOG),
    "syslog_facility": AtDefault((*_OFF, "user"), _SYSLOG),
    "disable_redirect_access_to_syslog": AtDefault(_OFF, _SYSLOG),
    "reuse_port": AtDefault(_OFF, "prefork's workers share one listening socket; run more "
                            "instances behind the proxy instead"),
    "paste": AtDefault(_OFF, "point app at the WSGI callable (MODULE:NAME)"),
    "raw_paste_global_conf": AtDefault(_OFF, "point app at the WSGI callable (MODULE:NAME)"),
    "logger_class": AtDefault((*_OFF, "gunicorn.glogging.Logger", "simple"),
                              "configure logging with logconfig_dict (its 'gunicorn.error' "
                              "and 'gunicorn.access' loggers get prefork's lines)"),
    "secure_scheme_headers": AtDefault((*_OFF, _SECURE_SCHEME_HEADERS),
                                       "X-Forwarded-Proto and Forwarded are read from the "
                                       "proxies in forwarded_allow_ips"),
    "header_map": AtDefault((*_OFF, "drop"), "header names with '_' are always dropped"),
    "strip_header_spaces": AtDefault(_OFF, "never: whitespace before a colon is a 400 "
                                     "(RFC 9112 §5)"),
    "permit_unconventional_http_method": AtDefault(_OFF, "every method llhttp can frame "
                                                   "reaches the app"),
    "permit_unconventional_http_version": AtDefault(_OFF, "HTTP/1.0 and 1.1 only"),
    "permit_obsolete_folding": AtDefault(_OFF, "obsolete line folding is a 400 "
                                         "(RFC 9112 §5.2)"),
    "casefold_http_method": AtDefault(_OFF, "methods are case-sensitive (RFC 9110 §9.1)"),
    "protocol": AtDefault((*_OFF, "http"), "prefork speaks HTTP only; use nginx's "
                          "proxy_pass rather than uwsgi_pass"),
    "asgi_loop": AtDefault((*_OFF, "auto"), _ASGI),
    "asgi_lifespan": AtDefault((*_OFF, "auto"), _ASGI),
    "asgi_disconnect_grace_period": AtDefault((*_OFF, 3), _ASGI),
    "http_protocols": AtDefault((*_OFF, "h1"), _H2),
    "http2_cleartext": AtDefault((*_OFF, "off"), _H2),
    "http2_initial_window_size": AtDefault((*_OFF, 65535), _H2),
    "http2_max_concurrent_streams": AtDefault((*_OFF, 100), _H2),
    "http2_max_frame_size": AtDefault((*_OFF, 16384), _H2),
    "http2_max_header_list_size": AtDefault((*_OFF, 65536), _H2),
    "dirty_apps": AtDefault(_OFF, _DIRTY),
    "dirty_workers": AtDefault(_OFF, _DIRTY),
}

# Server hooks, with gunicorn's names and the arguments prefork passes.
HOOKS: dict[str, str] = {
    "on_starting": "(server): in the master before anything starts; raising aborts start-up",
    "on_reload": "(server): in the master on SIGHUP, before the new workers start",
    "when_ready": "(server): in the master once it listens, before the workers start",
    "pre_fork": "(server, worker): in the master just before a worker is forked",
    "post_fork": "(server, worker): in the new worker, before the app is imported",
    "post_worker_init": "(worker): in the worker once the app is loaded",
    "worker_int": "(worker): in the worker on SIGINT or SIGQUIT",
    "worker_abort": "(worker): in the worker when the master stops it for a stuck request",
    "pre_exec": "(server): in the master on SIGUSR2, before the new master is started",
    "pre_request": "(worker, req): in the pool thread before the app runs",
    "post_request": "(worker, req, environ, resp): after the response",
    "child_exit": "(server, worker): in the master after a worker exited",
    "worker_exit": "(server, worker): in the worker just before it exits",
    "nworkers_changed": "(server, new_value, old_value): after TTIN/TTOU or a reload",
    "on_exit": "(server): in the master just before it exits",
}
# Hooks of gunicorn features prefork does not have: never called, as gunicorn never calls
# them without those features (TLS, dirty workers).
IDLE_HOOKS: dict[str, str] = {
    "ssl_context": _TLS,
    "on_dirty_starting": _DIRTY,
    "dirty_post_fork": _DIRTY,
    "dirty_worker_init": _DIRTY,
    "dirty_worker_exit": _DIRTY,
}

# gunicorn's command-line flags: flag -> (setting, takes a value).
FLAGS: dict[str, tuple[str, bool]] = {}
_SWITCHES = {
    "capture_output", "casefold_http_method", "check_config", "control_socket_disable",
    "daemon", "disable_redirect_access_to_syslog", "do_handshake_on_connect",
    "enable_backlog_metric", "enable_stdio_inheritance", "initgroups",
    "permit_obsolete_folding", "permit_unconventional_http_method",
    "permit_unconventional_http_version", "preload_app", "print_config", "reload",
    "reuse_port", "sendfile", "spew", "strip_header_spaces", "suppress_ragged_eofs",
    "syslog"}
for _name, _flags in {
    "access_log_format": ("--access-logformat",), "accesslog": ("--access-logfile",),
    "asgi_disconnect_grace_period": ("--asgi-disconnect-grace-period",),
    "asgi_lifespan": ("--asgi-lifespan",), "asgi_loop": ("--asgi-loop",),
    "backlog": ("--backlog",), "bind": ("-b", "--bind"), "ca_certs": ("--ca-certs",),
    "capture_output": ("--capture-output",), "casefold_http_method": ("--casefold-http-method",),
    "cert_reqs": ("--cert-reqs",), "certfile": ("--certfile",), "chdir": ("--chdir",),
    "config": ("-c", "--config"),
    "check_config": ("--check-config",), "ciphers": ("--ciphers",),
    "control_socket": ("--control-socket",), "control_socket_disable": ("--no-control-socket",),
    "control_socket_mode": ("--control-socket-mode",), "daemon": ("-D", "--daemon"),
    "dirty_apps": ("--dirty-app",), "dirty_graceful_timeout": ("--dirty-graceful-timeout",),
    "dirty_threads": ("--dirty-threads",), "dirty_timeout": ("--dirty-timeout",),
    "dirty_workers": ("--dirty-workers",),
    "disable_redirect_access_to_syslog": ("--disable-redirect-access-to-syslog",),
    "do_handshake_on_connect": ("--do-handshake-on-connect",),
    "dogstatsd_tags": ("--dogstatsd-tags",), "enable_backlog_metric": ("--enable-backlog-metric",),
    "enable_stdio_inheritance": ("-R", "--enable-stdio-inheritance"),
    "errorlog": ("--error-logfile", "--log-file"),
    "forwarded_allow_ips": ("--forwarded-allow-ips",),
    "forwarder_headers": ("--forwarder-headers",), "graceful_timeout": ("--graceful-timeout",),
    "group": ("-g", "--group"), "header_map": ("--header-map",),
    "http2_cleartext": ("--http2-cleartext",),
    "http2_initial_window_size": ("--http2-initial-window-size",),
    "http2_max_concurrent_streams": ("--http2-max-concurrent-streams",),
    "http2_max_frame_size": ("--http2-max-frame-size",),
    "http2_max_header_list_size": ("--http2-max-header-list-size",),
    "http_parser": ("--http-parser",), "http_protocols": ("--http-protocols",),
    "initgroups": ("--initgroups",), "keepalive": ("--keep-alive",), "keyfile": ("--keyfile",),
    "limit_request_field_size": ("--limit-request-field_size",),
    "limit_request_fields": ("--limit-request-fields",),
    "limit_request_line": ("--limit-request-line",), "logconfig": ("--log-config",),
    "logconfig_json": ("--log-config-json",), "logger_class": ("--logger-class",),
    "loglevel": ("--log-level",), "max_requests": ("--max-requests",),
    "max_requests_jitter": ("--max-requests-jitter",), "paste": ("--paste", "--paster"),
    "permit_obsolete_folding": ("--permit-obsolete-folding",),
    "permit_unconventional_http_method": ("--permit-unconventional-http-method",),
    "permit_unconventional_http_version": ("--permit-unconventional-http-version",),
    "pidfile": ("-p", "--pid"), "preload_app": ("--preload",),
    "print_config": ("--print-config",), "proc_name": ("-n", "--name"),
    "protocol": ("--protocol",), "proxy_allow_ips": ("--proxy-allow-from",),
    "proxy_protocol": ("--proxy-protocol",), "pythonpath": ("--pythonpath",),
    "raw_env": ("-e", "--env"), "raw_paste_global_conf": ("--paste-global",),
    "reload": ("--reload",), "reload_engine": ("--reload-engine",),
    "reload_extra_files": ("--reload-extra-file",), "reuse_port": ("--reuse-port",),
    "root_path": ("--root-path",), "sendfile": ("--no-sendfile",), "spew": ("--spew",),
    "ssl_version": ("--ssl-version",), "statsd_host": ("--statsd-host",),
    "statsd_prefix": ("--statsd-prefix",), "strip_header_spaces": ("--strip-header-spaces",),
    "suppress_ragged_eofs": ("--suppress-ragged-eofs",), "syslog": ("--log-syslog",),
    "syslog_addr": ("--log-syslog-to",), "syslog_facility": ("--log-syslog-facility",),
    "syslog_prefix": ("--log-syslog-prefix",), "threads": ("--threads",),
    "timeout": ("-t", "--timeout"), "umask": ("-m", "--umask"), "user": ("-u", "--user"),
    "uwsgi_allow_ips": ("--uwsgi-allow-from",),
    "websocket_max_message_size": ("--websocket-max-message-size",),
    "worker_class": ("-k", "--worker-class"), "worker_connections": ("--worker-connections",),
    "worker_tmp_dir": ("--worker-tmp-dir",), "workers": ("-w", "--workers"),
}.items():
    for _flag in _flags:
        FLAGS[_flag] = (_name, _name not in _SWITCHES)


def at_default(name: str, value: object) -> bool:
    """Whether `value` of an AT_DEFAULT setting asks for nothing (a flag's text counts:
    "0", "false", "none")."""
    rule = AT_DEFAULT[name]
    if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "none", "off"):
        return True
    if isinstance(value, str):
        return any((isinstance(d, str) and d.lower() == value.strip().lower())
                   or (isinstance(d, int) and not isinstance(d, bool) and value.isdigit()
                       and int(value) == d)
                   for d in rule.defaults)
    return (isinstance(value, list | tuple | dict) and not value) or any(
        value == d for d in rule.defaults)
