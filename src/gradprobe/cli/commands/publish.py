"""``gradprobe publish [--out site]``: a static site of every analysed run (make publish)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    publish = sub.add_parser("publish", help="build a static site of every analysed run")
    publish.add_argument("--reports", type=Path, default=Path("reports"),
                         help="directory holding the run directories (default reports)")
    publish.add_argument("--out", type=Path, default=Path("site"),
                         help="site directory; an earlier site there is replaced "
                              "(default site)")
    publish.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.history.site import publish

    result = publish(reports=args.reports, out=args.out)
    for reason in result.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    extra = "".join(f", {page}" for page in result.pages)
    print(f"published {len(result.runs)} runs{extra} -> {result.out / 'index.html'}")
    return EXIT_OK
