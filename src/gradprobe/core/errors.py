"""The one error type users see: bad input, reported in one line, exit code 2.

Everything a user can get wrong (a config key, a value, a run directory, a records file)
raises :class:`UserError`. The CLI prints ``error: <message>`` and exits with
:data:`EXIT_USAGE`; nothing else is caught, so real bugs still show a traceback.
"""

from __future__ import annotations

import json

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user: the message names the file, key or value and how to fix it."""


class ConfigError(UserError, ValueError):
    """An invalid configuration value.

    ``key`` is the dotted TOML key (``model.depth``);
    :func:`gradprobe.bench.plan.loader.load_config`
    prefixes the file name, so the final message reads
    ``bench/configs/x.toml: [model] depth = 1: must be >= 2``.
    """

    def __init__(self, key: str, problem: str, value: object = None, *, has_value: bool = True):
        self.key = key
        self.problem = problem
        self.value = value
        self.has_value = has_value
        self.source: str | None = None  # set by the loader: the config file's path
        super().__init__(key, problem)

    def __str__(self) -> str:
        return self.describe(self.source)

    def describe(self, source: str | None = None) -> str:
        section, _, name = self.key.rpartition(".")
        where = f"[{section}] {name}" if section else name
        shown = f" = {toml_repr(self.value)}" if self.has_value else ""
        prefix = f"{source}: " if source else ""
        return f"{prefix}{where}{shown}: {self.problem}"


def toml_repr(value: object) -> str:
    """Show a value as it is written in TOML (``true``, ``"relu"``, ``[1, 2]``), for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON's string escapes are TOML's basic-string escapes: a newline or a terminal
        # escape sequence in a value is shown as \n or \u001b, never sent raw.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        shown = ", ".join(toml_repr(v) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    return repr(value)


def one_line(text: str) -> str:
    """``text`` as a single printable line: runs of whitespace become one space and other
    control characters their escape (library messages, such as a Parquet decoder's, can
    carry raw bytes and line breaks)."""
    flat = " ".join(text.split())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in flat)
