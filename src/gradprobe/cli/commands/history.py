"""``gradprobe history``: trends of chosen metrics over runs, with change points;
``gradprobe history add RUN_DIR`` appends an analysed run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradprobe.cli.arguments import ratio_above_one
from gradprobe.core.errors import EXIT_OK

DEFAULT_ROOT = Path("reports/history")


def _where(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. depth=3")
    return key, value


def add_parser(sub) -> None:
    history = sub.add_parser("history", help="trends over runs with change points")
    history.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                         help="history directory (default reports/history)")
    history.add_argument("--metric", action="append", help="metric(s) (default grad_mean_abs)")
    history.add_argument("--param", action="append", help="parameter(s) (default: each "
                         "config's input-side weight, e.g. layers.0.weight)")
    history.add_argument("--where", action="append", type=_where, default=[],
                         help="axis filter KEY=VALUE, repeatable (e.g. depth=3)")
    history.add_argument("--config", help="only runs of this config name")
    history.add_argument("--tolerance", type=ratio_above_one, help="smallest step reported "
                         "(default: the compare tolerance)")
    history.add_argument("--html", type=Path, help="also write the trends page here")
    history.add_argument("--json", action="store_true", help="print the series as one "
                         "JSON object instead of the text")
    history.set_defaults(func=show_command)
    verbs = history.add_subparsers(dest="history_command")
    add = verbs.add_parser("add", help="append an analysed run to the history")
    add.add_argument("run_dir", type=Path)
    add.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    add.set_defaults(func=add_command)


def add_command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.history.run_history import append_run

    path, rows = append_run(args.run_dir, root=args.root)
    print(f"{rows} rows of {args.run_dir} -> {path}")
    return EXIT_OK


def show_command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.compare.comparison import DEFAULT_TOLERANCE
    from gradprobe.analysis.history.history_page import write_history_page
    from gradprobe.analysis.history.run_history import (
        format_trends,
        read_history,
        select_rows,
        trends,
        trends_json,
    )
    from gradprobe.core.json_output import to_json

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    history = read_history(args.root)
    items = trends(history, metrics=tuple(args.metric or ["grad_mean_abs"]),
                   params=tuple(args.param) if args.param else None, where=dict(args.where),
                   config=args.config, tolerance=tolerance)
    print(to_json(trends_json(items)) if args.json else format_trends(items))
    if args.html:  # the page offers every series of the selected configs and cells
        rows = select_rows(history, where=dict(args.where), config=args.config)
        written = write_history_page(args.html, rows, tolerance=tolerance)
        print(f"-> {written}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK
