"""``gradprobe analyze RUN_DIR``: statistics over seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradprobe.cli.arguments import add_executor_arguments, bootstrap_seed
from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    analyze = sub.add_parser("analyze", help="compute statistics over seeds")
    analyze.add_argument("run_dir", type=Path)
    analyze.add_argument("--resamples", type=int,
                         help="bootstrap resamples per interval, 100 to 100000 "
                         "(default 4999)")
    analyze.add_argument("--bootstrap-seed", type=bootstrap_seed, default=0)
    add_executor_arguments(analyze, "cells' statistics")
    analyze.add_argument("--json", action="store_true",
                         help="print one JSON object (settings, row counts, headline table)")
    analyze.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.analyze import AnalysisSettings, incomplete_note
    from gradprobe.analysis.report.headline import headline_for
    from gradprobe.api import open_run
    from gradprobe.core.json_output import to_json

    options = {"seed": args.bootstrap_seed}
    if args.resamples is not None:
        options["n_resamples"] = args.resamples
    AnalysisSettings(**options)  # refuse bad settings before reading the run
    run = open_run(args.run_dir)
    analysis = run.analyze(**options, executor=args.executor, workers=args.workers,
                           scheduler=args.scheduler)
    note = incomplete_note(args.run_dir, analysis.meta)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    headline = headline_for(analysis)
    out = run.analysis_dir
    if args.json:
        print(to_json({"run_dir": args.run_dir, "analysis_dir": out, **analysis.meta,
                       "headline": headline.as_json()}))
        return EXIT_OK
    rows = ", ".join(f"{k} {v}" for k, v in analysis.meta["rows"].items())
    print(f"{headline.text}\n\nanalysed {args.run_dir} in {analysis.meta['seconds']:.2f} s "
          f"({rows} rows) -> {out}")
    return EXIT_OK
