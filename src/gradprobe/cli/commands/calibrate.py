"""``gradprobe calibrate CONFIG``: noise band, false-positive rate and power of compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradprobe.cli.arguments import ratio_above_one
from gradprobe.core.errors import EXIT_OK


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1.1,1.5,2") from None


def add_parser(sub) -> None:
    calibrate = sub.add_parser(
        "calibrate", help="measure the compare rule's noise band, false positives and power",
        description="Run A/A comparisons (same config, disjoint seed sets), a float64 rerun "
        "and planted effects; print the noise band, the false-positive rate per tolerance, "
        "the power, and the tolerance they suggest.")
    calibrate.add_argument("config", help="config file or preset name")
    calibrate.add_argument("--seeds", type=int, help="seeds per side (default: the config's)")
    calibrate.add_argument("--repetitions", type=int, default=20, help="A/A pairs (20)")
    calibrate.add_argument("--effects", type=_floats, help="unpaired effect sizes, e.g. 1.1,2")
    calibrate.add_argument("--gains", type=_floats, help="paired init_gain factors")
    calibrate.add_argument("--resamples", type=int, default=999)
    calibrate.add_argument("--power-tolerance", type=ratio_above_one, help="tolerance for "
                           "the power measurements (default: the suggested one)")
    calibrate.add_argument("--out", type=Path, help="also write calibration.json here")
    calibrate.add_argument("--workdir", type=Path, help="keep the sweeps here "
                           "(default: a temporary directory)")
    calibrate.add_argument("--coverage", action="store_true", help="instead: simulate the "
                           "coverage of the 95%% intervals (t, Welch, sign test, BCa; 6, 10, "
                           "16, 50 seeds) on log-normal data and on a --pool-seed sweep of "
                           "CONFIG")
    calibrate.add_argument("--pool", type=int, default=400, help="seeds of the --coverage "
                           "sweeps (400)")
    calibrate.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.bench.plan.loader import load_config
    from gradprobe.calibration import CalibrationSettings, calibrate, format_calibration
    from gradprobe.core.atomic_files import write_json_atomic

    if args.coverage:
        return coverage_command(args)
    options = {"repetitions": args.repetitions, "seeds": args.seeds,
               "n_resamples": args.resamples, "power_tolerance": args.power_tolerance}
    options.update({k: v for k, v in (("effects", args.effects), ("gains", args.gains)) if v})
    result = calibrate(load_config(args.config), settings=CalibrationSettings(**options),
                       workdir=args.workdir)
    print(format_calibration(result))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"-> {write_json_atomic(args.out / 'calibration.json', result.to_json())}")
    return EXIT_OK


def coverage_command(args: argparse.Namespace) -> int:
    """``--coverage``: :mod:`gradprobe.coverage` on log-normal data and on CONFIG's records;
    ``--repetitions`` samples per cell of the table, ``--resamples`` for BCa."""
    import tempfile
    from dataclasses import asdict

    from gradprobe.bench.plan.loader import load_config
    from gradprobe.core.atomic_files import write_json_atomic
    from gradprobe.coverage import (
        CoverageSettings,
        coverage_table,
        format_coverage,
        lognormal_sampler,
        records_sweeps,
    )

    settings = CoverageSettings(repetitions=args.repetitions, n_resamples=args.resamples)
    with tempfile.TemporaryDirectory(prefix="gradprobe-coverage-") as tmp:
        records = records_sweeps(load_config(args.config), args.pool, args.workdir or tmp)
        table = coverage_table({"log-normal": lognormal_sampler(settings.rows),
                                f"records ({args.config}, {args.pool} seeds)": records},
                               settings)
    print(format_coverage(table))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"settings": {**asdict(settings), "pool": args.pool, "config": args.config},
               "coverage": table.to_dict(orient="records")}
        print(f"-> {write_json_atomic(args.out / 'coverage.json', doc)}")
    return EXIT_OK
