"""``gradprobe compare BASE RUN`` (or ``--baseline NAME RUN``, ``--previous RUN``): the
statistical regression gate (exit 1 on a regression)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gradprobe.cli.arguments import bootstrap_seed, ratio_above_one
from gradprobe.core.errors import UserError


def add_parser(sub) -> None:
    compare = sub.add_parser(
        "compare", help="compare a run with a baseline; exit 1 when something regressed",
        description="Match cells by their sweep axes and judge every cell, parameter and "
        "metric: regressed, improved, unchanged or inconclusive. Exit 0 when nothing "
        "regressed, 1 when something did, 2 on bad input. With GITHUB_STEP_SUMMARY set, "
        "compare.md is appended to it.")
    compare.add_argument("paths", type=Path, nargs="+", metavar="[BASE] RUN",
                         help="baseline or run directory, then the run (or baseline) "
                         "directory under test; RUN alone with --baseline or --previous")
    which = compare.add_mutually_exclusive_group()
    which.add_argument("--baseline", metavar="NAME", help="compare with the saved baseline "
                       "NAME (under --baselines)")
    which.add_argument("--previous", action="store_true", help="compare with the previous "
                       "complete run of RUN's config beside it")
    compare.add_argument("--baselines", type=Path, default=Path("reports/baselines"),
                         help="where --baseline looks (default reports/baselines)")
    compare.add_argument("--alpha", type=float, help="false discovery rate (default 0.05, "
                         "or [compare] alpha of RUN's config)")
    compare.add_argument("--tolerance", type=ratio_above_one, help="ratio band [1/t, t] "
                         "that counts as no change (default from calibration, or [compare] "
                         "tolerance)")
    compare.add_argument("--resamples", type=int, help="bootstrap resamples (default 1999; only "
                         "bootstrap interval methods use them, the default t intervals none)")
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
        format_terminal,
        to_json,
    )
    from gradprobe.api import compare

    base, run = sides(args)
    result = compare(base, run, alpha=args.alpha, tolerance=args.tolerance,
                     n_resamples=args.resamples, seed=args.bootstrap_seed, out=args.out)
    comparison, written = result.detail, list(result.files)
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
    return result.exit_code


def sides(args: argparse.Namespace) -> tuple[Path, Path]:
    """BASE and RUN from the positional paths, --baseline or --previous."""
    from gradprobe.pipeline import baseline_path, previous_of

    shortcut = args.baseline is not None or args.previous
    if len(args.paths) != (1 if shortcut else 2):
        raise UserError("compare: give BASE RUN, or RUN alone with --baseline NAME or "
                        f"--previous (got {len(args.paths)} paths)")
    if args.baseline is not None:
        return baseline_path(args.baseline, args.baselines), args.paths[0]
    if args.previous:
        return previous_of(args.paths[0]), args.paths[0]
    return args.paths[0], args.paths[1]
