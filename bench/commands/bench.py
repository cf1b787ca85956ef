"""``gradprobe bench [CONFIG]``: run, analyse, report and update ``reports/latest`` (make bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import EXIT_OK


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="run, analyse and report in one go (make bench)")
    bench.add_argument("config", nargs="?", default="default")
    bench.add_argument("--root", type=Path, default=Path("reports"),
                       help="where run directories and latest/ go (default reports)")
    bench.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    bench.add_argument("--no-progress", action="store_true")
    bench.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from analysis.pipeline import bench_pipeline

    result = bench_pipeline(config_path=args.config, root=args.root, seeds=args.seeds,
                            progress=not args.no_progress)
    print(result.headline_text)
    print(f"\nreport: {result.report}\nlatest: {result.latest}")
    return EXIT_OK
