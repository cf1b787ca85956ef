"""``gradprobe bench [CONFIG]``: run, analyse, compare with the previous run, report, append
to the history and update ``reports/latest`` (make bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="run, analyse and report in one go (make bench)")
    bench.add_argument("config", nargs="?", default="default")
    bench.add_argument("--root", type=Path, default=Path("reports"),
                       help="where run directories and latest/ go (default reports)")
    bench.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument("--no-compare", action="store_true",
                       help="do not compare with the previous run of the same config")
    bench.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.pipeline import bench_pipeline

    result = bench_pipeline(config_path=args.config, root=args.root, seeds=args.seeds,
                            progress=not args.no_progress, compare=not args.no_compare)
    print(result.headline_text)
    if result.verdicts is not None:
        counts = ", ".join(f"{n} {verdict}" for verdict, n in result.verdicts.items())
        print(f"\ncompared with the previous run {result.compared_with}: {counts} "
              f"(details: {result.run_dir / 'compare.md'})")
    print(f"\nreport: {result.report}\nlatest: {result.latest}\nhistory: {result.history}")
    return EXIT_OK
