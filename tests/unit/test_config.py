"""Settings: declared once, resolved with precedence, validated with clear errors."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from prefork import config, config_text
from prefork.cli import parse
from prefork.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    cfg = config.resolve()
    assert cfg.bind == ("127.0.0.1:8000",)
    assert cfg.threads == 8
    assert cfg.workers == config.available_cpus() >= 1
    assert cfg.app is None


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("threads = 2\nworkers = 2\nkeepalive = 9\n")
    cfg = config.resolve({"threads": "4"}, {"PREFORK_THREADS": "3", "PREFORK_WORKERS": "5"},
                         path)
    assert (cfg.threads, cfg.workers, cfg.keepalive) == (4, 5, 9.0)


def test_tables_group_but_do_not_rename(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[anything]\ngraceful_timeout = 5\n[workers]\nworkers = 3\n")
    cfg = config.resolve(path=path)
    assert cfg.graceful_timeout == 5.0 and cfg.workers == 3


@pytest.mark.parametrize("text, key", [
    ("threads = 0\n", "threads"),
    ("threads = 'many'\n", "threads"),
    ("keepalive = true\n", "keepalive"),
    ("loglevel = 'loud'\n", "loglevel"),
    ("bind = ['no where']\n", "bind"),  # (a host alone is HOST:8000, as gunicorn has it)
    ("workerz = 2\n", "workerz"),
    ("[http]\nkeepalive_timeout = 2\n", "keepalive_timeout"),
    ("threads = 2\n[t]\nthreads = 3\n", "threads"),
    ("root_path = 'api/'\n", "root_path"),
])
def test_file_errors_name_key_value_and_allowed(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.resolve(path=path)
    assert info.value.key == key
    message = str(info.value)
    assert repr(key) in message and str(path) in message
    assert info.value.allowed


def test_error_message_for_out_of_range() -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve({"workers": "0"})
    assert str(info.value) == ("setting 'workers' (from command line --workers): got '0'; "
                               "expected a whole number from 1 to 1024")


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="PREFORK_THREDS"):
        config.resolve(environ={"PREFORK_THREDS": "2"})


def test_bool_octal_and_list_from_text() -> None:
    cfg = config.resolve(environ={"PREFORK_PRELOAD_APP": "yes",
                                  "PREFORK_UNIX_SOCKET_MODE": "640",
                                  "PREFORK_BIND": "127.0.0.1:1, unix:/tmp/x.sock"})
    assert cfg.preload_app is True
    assert cfg.unix_socket_mode == 0o640
    assert cfg.bind == ("127.0.0.1:1", "unix:/tmp/x.sock")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.resolve(path=tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("threads = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.resolve(path=bad)


def test_cli_flags_are_generated_from_settings() -> None:
    _args, cfg, _hooks = parse(["myapp:application", "--bind", "127.0.0.1:1", "--bind", "[::1]:2",
                       "--graceful-timeout", "7", "--no-preload-app", "--workers", "4"],
                      environ={})
    assert cfg.app == "myapp:application"
    assert cfg.bind == ("127.0.0.1:1", "[::1]:2")
    assert cfg.graceful_timeout == 7.0 and cfg.preload_app is False and cfg.workers == 4


def test_every_setting_has_doc_and_section() -> None:
    for field in config.iter_settings():
        assert field.metadata["doc"], field.name
        assert field.metadata["section"], field.name


def test_shipped_config_toml_is_the_generated_example() -> None:
    shipped = (ROOT / "config.toml").read_text()
    assert shipped == config_text.example_toml(), (
        "config.toml is out of date: run  python -m prefork --print-example-config > config.toml")


def test_example_config_resolves_to_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config_text.example_toml())
    tomllib.loads(config_text.example_toml())
    assert config.resolve(path=path) == config.resolve()


def test_available_cpus_respects_affinity() -> None:
    import os

    assert 1 <= config.available_cpus() <= len(os.sched_getaffinity(0))


def test_sections_are_contiguous() -> None:
    """example_toml() opens each table once; settings of one table must stand together."""
    seen: list[str] = []
    for field in config.iter_settings():
        section = field.metadata["section"]
        if not seen or seen[-1] != section:
            assert section not in seen, f"{field.name} reopens [{section}]"
            seen.append(section)


def test_help_lists_every_setting() -> None:
    # A doc with a % in it (access_log_format's atoms) once made --help crash.
    proc = subprocess.run([sys.executable, "-m", "prefork", "--help"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for field in config.iter_settings():
        if not field.metadata["positional"]:
            assert config.flag_name(field.name) in proc.stdout, field.name


def test_flag_kinds_come_from_declared_types_not_help_text() -> None:
    from prefork.config import flag_kind

    assert flag_kind("preload_app") == "switch"
    assert flag_kind("bind") == "repeated" and flag_kind("static") == "repeated"
    assert flag_kind("env") == "repeated"
    assert flag_kind("workers") == "value" and flag_kind("proxy_protocol") == "value"


def test_every_setting_has_a_kind_and_choices_come_from_its_literal_type() -> None:
    from prefork.values import Kind

    assert set(config.KINDS) == set(config.FIELDS)
    assert config.KINDS["unix_socket_mode"] is Kind.OCTAL
    assert config.KINDS["static"] is Kind.MOUNTS
    assert config.CHOICES["proxy_protocol"] == ("off", "v1", "v2", "auto")
    assert config.CHOICES["loglevel"] == ("debug", "info", "warning", "error", "critical")
    with pytest.raises(ConfigError) as err:
        config.resolve(cli={"memory_metric": "pss"})
    assert "memory_metric" in str(err.value) and "'rss', 'uss'" in str(err.value)
    assert config.resolve(cli={"loglevel": " WARNING "}).loglevel == "warning"


def test_a_bad_static_mount_names_the_mount_at_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config.resolve(cli={"static": f"/ok/={tmp_path},nosep"})
    assert "nosep" in str(err.value) and "PREFIX=DIRECTORY" in str(err.value)
