"""``gradprobe compare BASE RUN``: the statistical regression gate (exit 1 on a regression)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gradprobe.cli.commands.arguments import bootstrap_seed, ratio_above_one
from gradprobe.core.errors import EXIT_OK, EXIT_REGRESSION


def add_parser(sub) -> None:
    compare = sub.add_parser(
        "compare", help="compare a run with a baseline; exit 1 when something regressed",
        description="Match cells by their sweep axes and judge every cell, parameter and "
        "metric: regressed, improved, unchanged or inconclusive. Exit 0 when nothing "
        "regressed, 1 when something did, 2 on bad input. With GITHUB_STEP_SUMMARY set, "
        "compare.md is appended to it.")
    compare.add_argument("base", type=Path, help="baseline or run directory")
    compare.add_argument("run", type=Path, help="run (or baseline) directory under test")
    compare.add_argument("--alpha", type=float, help="false discovery rate (default 0.05, "
                         "or [compare] alpha of RUN's config)")
    compare.add_argument("--tolerance", type=ratio_above_one, help="ratio band [1/t, t] "
                         "that counts as no change (default from calibration, or [compare] "
                         "tolerance)")
    compare.add_argument("--resamples", type=int, help="bootstrap resamples (default 1999)")
    compare.add_argument("--bootstrap-seed", type=bootstrap_seed, default=0)
    compare.add_argument("--out", type=Path, help="where compare.json and compare.md go "
                         "(default: RUN when it is a run directory)")
    compare.add_argument("--all", action="store_true", help="list unchanged tests too")
    compare.add_argument("--limit", type=int, default=40, help="rows shown (default 40)")
    compare.add_argument("--json", action="store_true", help="print compare.json's object "
                         "on stdout instead of the table (exit codes unchanged)")
    compare.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.compare.compare_output import (
        MARKDOWN_FILE,
        compare_dirs,
        format_terminal,
        to_json,
    )

    comparison, written = compare_dirs(args.base, args.run, alpha=args.alpha,
                                       tolerance=args.tolerance, n_resamples=args.resamples,
                                       seed=args.bootstrap_seed, out=args.out)
    if args.json:
        from gradprobe.core.json_output import to_json as dumps

        print(dumps(to_json(comparison)))
    else:
        print(format_terminal(comparison, limit=args.limit, everything=args.all))
        if written:
            print(f"-> {', '.join(map(str, written))}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    markdown = [p for p in written if p.name == MARKDOWN_FILE]
    if summary and markdown:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown[0].read_text(encoding="utf-8"))
    return EXIT_REGRESSION if comparison.regressed else EXIT_OK
