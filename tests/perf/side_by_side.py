"""Print the idle and loaded engine/naive tables of ``make perf-loaded`` side by side.

``python tests/perf/side_by_side.py IDLE.json LOADED.json``: two pytest-benchmark JSON files
of the speed suite, one run alone and one beside ``tests/perf/competitor.py``.
"""

from __future__ import annotations

import json
import sys


def _benchmarks(path: str) -> list[dict]:
    with open(path) as handle:
        return [b["extra_info"] for b in json.load(handle)["benchmarks"]]


def seconds_per_seed(path: str) -> dict[tuple[str, str], float]:
    """``{(kind, cell key): median seconds per seed}`` from a pytest-benchmark JSON file."""
    return {(info["kind"], info["key"]): info["seconds_per_seed"]
            for info in _benchmarks(path) if "seconds_per_seed" in info}


def whole_run_ratio(path: str) -> str:
    """The blog's loop over ``gradprobe run`` for the whole-process benchmark."""
    seconds = {info["kind"]: info["seconds"] for info in _benchmarks(path)
               if info.get("kind", "").startswith("whole_")}
    if len(seconds) != 2:
        return "n/a"
    naive, gradprobe = seconds["whole_naive"], seconds["whole_gradprobe"]
    return f"{gradprobe:.2f} s vs {naive:.2f} s ({naive / gradprobe:.1f}x)"


def ratios(table: dict[tuple[str, str], float]) -> dict[str, float]:
    """Engine speed-up over the naive loop per engine cell key."""
    out = {}
    for (kind, key), engine in table.items():
        naive = table.get(("naive", "|".join(key.split("|")[:2])))
        if kind == "engine" and naive:
            out[key] = naive / engine
    return out


def main(idle_path: str, loaded_path: str) -> None:
    idle, loaded = ratios(seconds_per_seed(idle_path)), ratios(seconds_per_seed(loaded_path))
    header = f"{'cell':<28}{'engine/naive idle':>19}{'beside torch':>14}{'kept':>8}"
    print(header)
    print("-" * len(header))
    for key in idle:
        after = loaded.get(key)
        kept = f"{100 * after / idle[key]:.0f}%" if after else "n/a"
        shown = f"{after:.1f}x" if after else "n/a"
        print(f"{key:<28}{idle[key]:>18.1f}x{shown:>14}{kept:>8}")
    print(f"gradprobe run (20, 64) x 2000 x plain/residual vs the blog's loop: idle "
          f"{whole_run_ratio(idle_path)}; beside torch {whole_run_ratio(loaded_path)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
