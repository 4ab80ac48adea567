"""A resolved config as text: the settings as TOML lines (--print-config,
--check-config) and the documented example config (--print-example-config, and the
shipped config.toml, which a test keeps identical). Read by the CLI; declarations come
from config.py.
"""

from __future__ import annotations

from typing import Any

from prefork.config import META, Config, iter_settings
from prefork.values import StaticMount


def describe(config: Config) -> str:
    """The resolved settings as TOML-like lines (for --check-config)."""
    lines = []
    for field in iter_settings():
        lines.append(f"{field.name} = {format_value(field.name, getattr(config, field.name))}")
    return "\n".join(lines)


def format_value(name: str, value: Any) -> str:
    if value is None:
        return '""  # unset'
    if value == "" and META[name]["false_is_empty"]:
        return "false"
    if META[name]["octal"]:
        return f"0o{value:o}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, StaticMount):
        types = ", ".join(f'"{k}" = "{v}"' for k, v in value.types)
        return (f'{{prefix = "{value.prefix}", directory = "{value.directory}", '
                f'cache_control = "{value.cache_control}", index = "{value.index}", '
                f"follow_symlinks = {format_value('preload_app', value.follow_symlinks)}, "
                f"types = {{{types}}}}}")
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value("app", v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}" if value != int(value) else f"{int(value)}"
    return str(value)


def example_toml() -> str:
    """The documented example config: every setting, grouped, with its default."""
    out = [
        "# prefork example configuration: every setting with its default and what it does.",
        "# Tables only group settings; a name means the same in any table or at the top level.",
        "# Each setting is also --flag-name on the command line and PREFORK_NAME in the",
        "# environment. Precedence: command line > environment > this file > defaults.",
    ]
    section = None
    for field in iter_settings():
        meta = META[field.name]
        if meta["section"] != section:
            section = meta["section"]
            out.append(f"\n[{section}]")
        unit = f" [{meta['unit']}]" if meta["unit"] else ""
        out.append(f"# {meta['doc']}{unit}")
        if meta["default_doc"]:
            out.append(f"# {field.name} = <{meta['default_doc']}>")
        elif field.name == "app":
            out.append('# app = "myproject.wsgi:application"')
        elif field.name == "static":
            out[-2:] = [out[-1]]  # [[static]] is an array of tables, not a [static] table
            out += ["# [[static]]", '# prefix = "/static/"', '# directory = "public"',
                    '# cache_control = "public, max-age=3600"',
                    '# types = { ".wasm" = "application/wasm" }']
        else:
            default = field.default
            out.append(f"{field.name} = {format_value(field.name, default)}")
    return "\n".join(out) + "\n"
