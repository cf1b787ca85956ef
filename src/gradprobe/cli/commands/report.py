"""``gradprobe report RUN_DIR``: the self-contained HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="write the self-contained HTML report")
    report.add_argument("run_dir", type=Path)
    report.add_argument("-o", "--output", type=Path, help="file (default <run>/index.html)")
    report.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.analyze import incomplete_note, load_analysis
    from gradprobe.analysis.report.headline import headline_for
    from gradprobe.analysis.report.report_page import write_report

    path = write_report(args.run_dir, out=args.output)  # analyses the run first if needed
    analysis = load_analysis(args.run_dir)
    note = incomplete_note(args.run_dir, analysis.meta)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    print(f"{headline_for(analysis).text}\n\nreport -> {path}")
    return EXIT_OK
