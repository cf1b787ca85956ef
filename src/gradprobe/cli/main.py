"""``gradprobe``: measure gradient flow through deep networks, with statistics.

The verbs live in :mod:`gradprobe.cli.commands`, one module each. Bad input raises
:class:`gradprobe.core.errors.UserError`, printed here as one line with exit code 2, and so is an
output location that cannot be written; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import io
import sys

from gradprobe.bench.execute.stop_signals import Terminated
from gradprobe.cli.commands import COMMANDS
from gradprobe.core.errors import EXIT_USAGE, UserError, one_line
from gradprobe.core.version import __version__

INTERRUPTED = 130
# Write failures that are the environment's, not a bug: read-only file system, no
# permission, a file where a directory should be, no space or quota left.
UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR,
              errno.ENOSPC, errno.EDQUOT}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``) and exit code 2, like every
    other bad input; ``--help`` still shows the full usage."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gradprobe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gradprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"gradprobe.cli.commands.{name}").add_parser(sub)
    return parser


# Control characters other than newline and tab, as their escapes: text from records (a
# factory's parameter names, config values) must not drive the terminal (ANSI sequences).
_UNPRINTABLE = {c: ascii(chr(c))[1:-1] for c in (*range(0x20), *range(0x7f, 0xa0))
                if chr(c) not in "\n\t"}


class PrintableStdout(io.TextIOBase):
    """``sys.stdout`` with :data:`_UNPRINTABLE` escaped; everything else passes through."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text.translate(_UNPRINTABLE))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdout, sys.stdout = sys.stdout, PrintableStdout(sys.stdout)
    try:
        return _run(args)
    finally:
        sys.stdout = stdout


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        if err.errno not in UNWRITABLE:
            raise
        # The commands turn the writes they expect to fail into UserErrors; this catches the
        # rest (a lock file, a temporary directory) so the user still gets one line.
        print(f"error: {err.filename or ''}: cannot write ({err.strerror}); choose a writable "
              "output location or free some space", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as stop:
        out = getattr(args, "out", None)
        hint = f" --out {out}" if out else " --out <the run directory printed above>"
        what = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"\n{what}; finished cells are kept. Resume with the same command and{hint}",
              file=sys.stderr)
        # 128 + signal number, as a shell reports a process stopped by that signal.
        return 128 + Terminated.signum if isinstance(stop, Terminated) else INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
