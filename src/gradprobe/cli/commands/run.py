"""``gradprobe run CONFIG``: run a sweep and write raw records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradprobe.cli.arguments import add_executor_arguments
from gradprobe.core.errors import EXIT_OK

MIN_MEMORY = 2**20  # as gradprobe.bench.plan.sweep checks [sweep] max_memory


def memory_argument(text: str) -> int:
    """argparse type for ``--max-memory``: ``512M``, ``4G`` or bytes, at least 1 MiB (the
    same minimum as the config's ``[sweep] max_memory``)."""
    from gradprobe.bench.plan.config import check_int
    from gradprobe.bench.plan.loader import parse_memory
    from gradprobe.core.errors import ConfigError

    try:
        size = parse_memory("--max-memory", text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 4G") from None
    try:
        return check_int("--max-memory", size, minimum=MIN_MEMORY)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err.problem} bytes (1M)") from None


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="run a sweep and write raw records")
    run.add_argument("config", help="config file, or a preset name (seed, default, smoke)")
    run.add_argument("--out", type=Path, help="run directory (default reports/<name>-<time>)")
    run.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    run.add_argument("--device", action="append", help="device(s) to run on, overriding "
                     "the config (repeatable: --device cpu --device cuda)")
    run.add_argument("--max-memory", type=memory_argument,
                     help="working memory per chunk of seeds, e.g. 512M or 4G (default: the "
                     "config's [sweep] max_memory, else 1G)")
    run.add_argument("--force", action="store_true",
                     help="redo every cell, replacing what the run directory holds")
    add_executor_arguments(run, "cells")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                     "(run directory, counts, timing); progress stays on stderr")
    run.set_defaults(func=command)


def _announce(run_dir: Path, cells: int, done: int) -> None:
    resumed = f" ({done} already done)" if done else ""
    print(f"running {cells} cells{resumed} into {run_dir}", file=sys.stderr)


def command(args: argparse.Namespace) -> int:
    from gradprobe.api import run

    def announce(run_dir: Path, cells: int, done: int) -> None:
        args.out = run_dir  # for the interrupt message of gradprobe.cli.main
        _announce(run_dir, cells, done)

    done = run(Path(args.config), seeds=args.seeds, out=args.out, device=args.device,
               progress=not args.no_progress, max_memory=args.max_memory, force=args.force,
               executor=args.executor, workers=args.workers, scheduler=args.scheduler,
               on_start=announce)
    result, config = done.result, done.config
    if args.json:
        from gradprobe.core.json_output import to_json

        print(to_json({"run_dir": result.run_dir, "config": config.name,
                       "cells": len(done.manifest.cells), "cells_run": result.cells_run,
                       "cells_skipped": result.cells_skipped, "rows": result.rows,
                       "rows_new": result.rows_new, "seconds": result.seconds,
                       "manifest": Path(result.run_dir) / "manifest.json"}))
        return EXIT_OK
    print(f"{result.rows_new} records from {result.cells_run} cells "
          f"({result.cells_skipped} already done) in {result.seconds:.2f} s -> {result.run_dir}")
    return EXIT_OK
