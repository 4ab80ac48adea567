"""What a setting's value may be: its kind, and the conversion of a raw value to it.

A raw value comes from TOML (already typed) or from the command line and environment
(text); `convert` turns it into the setting's type by the converter of its `Kind`, then
checks the declared limits (choices, min, max, the setting's own `check`). The kind comes
from the declared type in config.py (and decides the command line's form, too); this
module knows nothing of particular settings, except the one value type of its own, a
static mount. Used by the master while reading settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict


class SettingMeta(TypedDict):
    """What config.setting() declares of a setting besides its name, type and default."""

    aliases: tuple[str, ...]  # more command-line flags (gunicorn's spellings)
    const: object  # the value of the flag given without one (None: it takes one)
    doc: str
    section: str
    min: float | None
    max: float | None
    check: Callable[[object], str | None] | None  # the problem with a value, if any
    unit: str
    octal: bool
    positional: bool
    default_doc: str | None
    false_is_empty: bool  # `false` in TOML or text means ""


class Kind(enum.Enum):
    """What a setting holds, from its declared type (and `octal`): how a raw value is
    converted, how the command line takes it, how it is described and printed."""

    SWITCH = enum.auto()  # bool
    INT = enum.auto()
    OCTAL = enum.auto()  # int, written in octal (permission modes)
    FLOAT = enum.auto()
    CHOICE = enum.auto()  # a Literal of strings
    TEXT = enum.auto()
    OPTIONAL_TEXT = enum.auto()  # str | None: empty is unset
    STRINGS = enum.auto()  # tuple[str, ...]
    MOUNTS = enum.auto()  # tuple[StaticMount, ...]


_DESCRIBED = {Kind.SWITCH: "true or false", Kind.INT: "a whole number",
              Kind.OCTAL: "an octal permission mode such as 0o660", Kind.FLOAT: "a number",
              Kind.TEXT: "a string", Kind.OPTIONAL_TEXT: "a string",
              Kind.STRINGS: "a list of strings", Kind.MOUNTS: "a list of strings"}


def describe_type(kind: Kind, meta: SettingMeta, choices: tuple[str, ...] = ()) -> str:
    """Human description of what a setting takes, used in errors and docs."""
    if kind is Kind.CHOICE:
        return "one of " + ", ".join(repr(c) for c in choices)
    text = _DESCRIBED[kind]
    if kind is Kind.FLOAT and meta["unit"]:
        text += f" of {meta['unit']}"
    if kind is Kind.INT or kind is Kind.FLOAT:
        text += _range_text(meta)
    return text


def _range_text(meta: SettingMeta) -> str:
    lo, hi = meta["min"], meta["max"]
    if lo is not None and hi is not None:
        return f" from {_number(lo)} to {_number(hi)}"
    if lo is not None:
        return f" of at least {_number(lo)}"
    return ""


def _number(value: float) -> str:
    """As a person writes it: 1048576, not 1.04858e+06; 0.1 stays 0.1."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Refused(Exception):
    """A value refused; config.coerce() turns it into a ConfigError naming the setting.
    `value`: the part of the raw value at fault, when not all of it (one mount)."""

    def __init__(self, why: str = "", value: object = None) -> None:
        self.why = why
        self.value = value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _to_switch(raw: object, meta: SettingMeta) -> bool:
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise Refused


def _to_int(raw: object, meta: SettingMeta) -> int:
    """An integer, or decimal text (octal text for an octal setting; 0x/0o/0b prefixes)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise Refused
    for base in (8 if meta["octal"] else 10, 0):
        with contextlib.suppress(ValueError):
            return int(raw.strip(), base)
    raise Refused


def _to_float(raw: object, meta: SettingMeta) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise Refused from None
    else:
        raise Refused
    if not math.isfinite(value):
        raise Refused
    return value


def _to_text(raw: object, meta: SettingMeta) -> str:
    if meta["false_is_empty"] and (raw is False or (
            isinstance(raw, str) and raw.strip().lower() in ("false", "off", "none"))):
        return ""
    if not isinstance(raw, str):
        raise Refused
    return raw


def _to_choice(raw: object, meta: SettingMeta) -> str:
    if not isinstance(raw, str):
        raise Refused
    return raw.strip().lower()


def _to_optional_text(raw: object, meta: SettingMeta) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise Refused
    return raw


def _to_strings(raw: object, meta: SettingMeta) -> tuple[str, ...]:
    """A list of strings, or comma-separated text (command line, environment)."""
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, list | tuple) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise Refused


@dataclass(frozen=True, slots=True)
class StaticMount:
    """One [[static]] table: files under `directory` served at URL `prefix`."""

    prefix: str
    directory: str
    cache_control: str = ""
    index: str = "index.html"
    follow_symlinks: bool = False  # may a symlink lead outside the directory?
    types: tuple[tuple[str, str], ...] = ()  # extra (".ext", "content/type") pairs


_MOUNT_KEYS = {f.name for f in dataclasses.fields(StaticMount)}


def _to_mounts(raw: object, meta: SettingMeta) -> tuple[StaticMount, ...]:
    """[[static]] tables, or "PREFIX=DIRECTORY" strings (command line, environment)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise Refused("expected [[static]] tables or PREFIX=DIRECTORY", raw)
    mounts = []
    for item in items:
        if isinstance(item, str):
            prefix, sep, directory = item.strip().partition("=")
            if not sep:
                raise Refused("expected PREFIX=DIRECTORY", item)
            item = {"prefix": prefix, "directory": directory}
        if not isinstance(item, dict) or not {"prefix", "directory"} <= set(item):
            raise Refused("each mount needs prefix and directory", item)
        unknown = set(item) - _MOUNT_KEYS
        if unknown:
            raise Refused(f"unknown keys {sorted(unknown)}; allowed: "
                          + ", ".join(sorted(_MOUNT_KEYS)), item)
        types = item.get("types", {})
        if not isinstance(types, dict) or not all(
                isinstance(k, str) and k.startswith(".") and isinstance(v, str)
                for k, v in types.items()):
            raise Refused('types maps ".ext" to "content/type"', types)
        mount = StaticMount(**{**item, "types": tuple((k.lower(), v) for k, v in types.items())})
        if not (mount.prefix.startswith("/") and mount.prefix.endswith("/")):
            raise Refused("a prefix starts and ends with /", mount.prefix)
        if not os.path.isdir(mount.directory):
            raise Refused("the directory does not exist", mount.directory)
        mounts.append(mount)
    return tuple(mounts)


_CONVERTERS: dict[Kind, Callable[[object, SettingMeta], object]] = {
    Kind.SWITCH: _to_switch, Kind.INT: _to_int, Kind.OCTAL: _to_int, Kind.FLOAT: _to_float,
    Kind.CHOICE: _to_choice, Kind.TEXT: _to_text, Kind.OPTIONAL_TEXT: _to_optional_text,
    Kind.STRINGS: _to_strings, Kind.MOUNTS: _to_mounts,
}


def convert(kind: Kind, raw: object, meta: SettingMeta, choices: tuple[str, ...] = ()) -> object:
    """A raw value (TOML, or text from the command line or environment) as the setting's
    type, within its declared limits. Raises Refused (with the reason, if not the type)."""
    value = _CONVERTERS[kind](raw, meta)
    _check(value, meta, choices)
    return value


def _check(value: object, meta: SettingMeta, choices: tuple[str, ...]) -> None:
    """The declared limits of a converted value: choices, min, max, then `check`."""
    if choices and value not in choices:
        raise Refused
    if isinstance(value, int | float) and not (
            (meta["min"] is None or value >= meta["min"])
            and (meta["max"] is None or value <= meta["max"])):
        raise Refused
    if meta["check"] is not None:
        problem = meta["check"](value)
        if problem:
            raise Refused(problem)
