"""``gradprobe baseline save RUN_DIR --name NAME`` and ``gradprobe baseline list``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    baseline = sub.add_parser("baseline", help="save or list baselines for `compare`")
    verbs = baseline.add_subparsers(dest="baseline_command", required=True)
    save = verbs.add_parser("save", help="copy a run's records and manifest into a baseline")
    save.add_argument("run_dir", type=Path)
    save.add_argument("--name", required=True, help="baseline name, e.g. smoke or v0.2")
    save.add_argument("--root", type=Path, default=Path("reports/baselines"),
                      help="where baselines live (default reports/baselines)")
    save.add_argument("--force", action="store_true", help="replace an existing baseline")
    save.set_defaults(func=save_command)
    listing = verbs.add_parser("list", help="list saved baselines")
    listing.add_argument("--root", type=Path, default=Path("reports/baselines"))
    listing.set_defaults(func=list_command)


def save_command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.compare.baseline import describe_saved, save_baseline

    saved = save_baseline(args.run_dir, name=args.name, root=args.root, force=args.force)
    print(describe_saved(saved))
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    from gradprobe.analysis.compare.baseline import format_baselines, list_baselines

    print(format_baselines(list_baselines(args.root)))
    return EXIT_OK
