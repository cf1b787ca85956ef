"""``gradprobe bisect --good REV --bad REV CONFIG``: the first commit of your code whose
gradients the compare gate tells apart from the good commit's (asv find)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradprobe.core.errors import EXIT_OK


def add_parser(sub) -> None:
    bisect = sub.add_parser(
        "bisect", help="find the first commit whose gradients differ (git bisect run)",
        description="In the git repository of the measured code, run CONFIG at the good "
        "commit, then at commits between good and bad (git bisect run); a commit is bad "
        "when compare flags any test against the good run. The checked-out branch is "
        "restored afterwards.")
    bisect.add_argument("config", help="config preset, path or name, as for `gradprobe run`")
    bisect.add_argument("--good", required=True, help="a commit with the old gradients")
    bisect.add_argument("--bad", required=True, help="a commit with the new gradients")
    bisect.add_argument("--repo", type=Path, default=Path("."),
                        help="the repository (default: the working directory's)")
    bisect.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the config's")
    bisect.add_argument("--stash", action="store_true", help="stash uncommitted changes "
                        "during the bisection (default: refuse them)")
    bisect.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from gradprobe.bisection import bisect

    result = bisect(good=args.good, bad=args.bad, config=args.config, repo=args.repo,
                    seeds=args.seeds, stash=args.stash)
    print(f"first commit whose gradients differ: {result.first_bad} {result.subject}")
    return EXIT_OK
