"""``gradprobe``: measure gradient flow through deep networks, with statistics.

The verbs live in :mod:`gradprobe.cli.commands`, one module each. Bad input raises
:class:`gradprobe.core.errors.UserError`, printed here as one line with exit code 2, and so is an
output location that cannot be written; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from gradprobe.cli.commands import COMMANDS
from gradprobe.core.errors import EXIT_USAGE, UserError, one_line

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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"bench.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = f" --out {out}" if out else " --out <the run directory printed above>"
        print(f"\ninterrupted; finished cells are kept. Resume with the same command and{hint}",
              file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
