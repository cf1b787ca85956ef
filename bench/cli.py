"""``gradprobe``: a thin argparse layer over plain functions.

Each subcommand parses its arguments and calls one function with keyword arguments
(``run_sweep``, ``analyze_run``, ``write_report``, ``bench_pipeline``). Bad input raises
:class:`bench.errors.UserError`, printed here as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import EXIT_OK, EXIT_USAGE, UserError

INTERRUPTED = 130


def _memory(text: str) -> int:
    """``512M``, ``4G``, ``1073741824`` -> bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 4G") from None


def cmd_run(args: argparse.Namespace) -> int:
    from bench.loader import config_with_overrides, load_config
    from bench.runner import check_devices, default_run_dir, run_sweep

    config = config_with_overrides(load_config(args.config), seeds=args.seeds,
                                   devices=args.device)
    overrides = {k: v for k, v in (("seeds", args.seeds), ("device", args.device)) if v}
    check_devices(config)
    args.out = args.out or default_run_dir(config)
    print(f"running {len(config.cells())} cells into {args.out}", file=sys.stderr)
    result = run_sweep(config, out=args.out, force=args.force, max_memory=args.max_memory,
                       progress=not args.no_progress, overrides=overrides)
    print(f"{result.rows} records from {result.cells_run} cells "
          f"({result.cells_skipped} already done) in {result.seconds:.2f} s -> {result.run_dir}")
    return EXIT_OK


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.analyze import AnalysisSettings, analyze_run

    settings = AnalysisSettings(seed=args.bootstrap_seed)
    if args.resamples is not None:
        settings = AnalysisSettings(n_resamples=args.resamples, seed=args.bootstrap_seed)
    analysis = analyze_run(args.run_dir, settings=settings)
    rows = ", ".join(f"{k} {v}" for k, v in analysis.meta["rows"].items())
    print(f"analysed {args.run_dir} in {analysis.meta['seconds']:.2f} s ({rows} rows) -> "
          f"{Path(args.run_dir) / 'analysis'}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    path = write_report(args.run_dir, out=args.output)
    print(f"report -> {path}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from analysis.pipeline import bench_pipeline

    result = bench_pipeline(config_path=args.config, root=args.root, seeds=args.seeds,
                            progress=not args.no_progress)
    print(result.headline_text)
    print(f"\nreport: {result.report}\nlatest: {result.latest}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradprobe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a sweep and write raw records")
    run.add_argument("config", help="config file, or a preset name (seed, default, smoke)")
    run.add_argument("--out", type=Path, help="run directory (default reports/<name>-<time>)")
    run.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    run.add_argument("--device", action="append", help="device(s) to run on, overriding "
                     "the config (repeatable: --device cpu --device cuda)")
    run.add_argument("--max-memory", type=_memory, default=2**30,
                     help="working memory per chunk of seeds, e.g. 512M or 4G (default 1G)")
    run.add_argument("--force", action="store_true",
                     help="redo every cell, replacing what the run directory holds")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    analyze = sub.add_parser("analyze", help="compute statistics over seeds")
    analyze.add_argument("run_dir", type=Path)
    analyze.add_argument("--resamples", type=int,
                         help="bootstrap resamples per interval (default 4999)")
    analyze.add_argument("--bootstrap-seed", type=int, default=0)
    analyze.set_defaults(func=cmd_analyze)

    report = sub.add_parser("report", help="write the self-contained HTML report")
    report.add_argument("run_dir", type=Path)
    report.add_argument("-o", "--output", type=Path, help="file (default <run>/index.html)")
    report.set_defaults(func=cmd_report)

    bench = sub.add_parser("bench", help="run, analyse and report in one go (make bench)")
    bench.add_argument("config", nargs="?", default="default")
    bench.add_argument("--root", type=Path, default=Path("reports"),
                       help="where run directories and latest/ go (default reports)")
    bench.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    bench.add_argument("--no-progress", action="store_true")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = f" --out {out}" if out else " --out <the run directory printed above>"
        print(f"\ninterrupted; finished cells are kept. Resume with the same command and{hint}",
              file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
