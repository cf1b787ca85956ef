"""``gradprobe bisect --good REV --bad REV CONFIG``: the first commit of the user's code whose
gradients differ from the good commit's, as asv's ``find``.

In the user's git repository (the working directory's, or ``repo``): run CONFIG at the good
commit once, then let ``git bisect run`` check out commits between good and bad and run
:func:`step` at each, a fresh process (so the user's factory module is imported from that
commit). A commit is *bad* when ``gradprobe compare`` of its run against the good run flags
any test (``regressed`` or ``improved``), *good* when none is flagged, and skipped (exit
125) when CONFIG cannot run there. ``git bisect reset`` restores the branch or commit that
was checked out. Uncommitted changes to tracked files are refused, or stashed and restored
with ``stash=True``. Runs go to a temporary directory outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gradprobe.core.errors import UserError

GOOD, BAD, SKIP = 0, 1, 125  # git bisect run's exit codes
FLAGGED = ("regressed", "improved")


@dataclass(frozen=True)
class BisectResult:
    """``first_bad``: full hash of the first commit that differs; ``subject`` its first
    line; ``log``: ``git bisect log`` (which commits were tested and judged how)."""

    first_bad: str
    subject: str
    log: str


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=check)


def _commit(repo: Path, rev: str, flag: str) -> str:
    done = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode:
        raise UserError(f"{flag} {rev}: not a commit in {repo}; give a hash, tag or branch")
    return done.stdout.strip()


def repository(path: Path) -> Path:
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise UserError(f"{path}: not in a git repository; run gradprobe bisect in the "
                        "repository of the code you measure, or pass --repo")
    return Path(done.stdout.strip())


def run_config(config: str, out: Path, seeds: int | None) -> None:
    """Run ``config`` into ``out`` (not analysed: compare reads the records)."""
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import config_with_overrides, load_config

    run_sweep(config_with_overrides(load_config(config), seeds=seeds), out=out,
              progress=False)


def step(*, config: str, good_run: Path, out: Path, seeds: int | None) -> int:
    """One bisection step at the checked-out commit: GOOD, BAD or SKIP (see module)."""
    from gradprobe.analysis.compare.compare_output import compare_dirs

    try:
        run_config(config, out, seeds)
        comparison = compare_dirs(good_run, out, write=False)[0]
    except UserError as err:
        print(f"gradprobe bisect: skipping this commit: {err}", file=sys.stderr)
        return SKIP
    flagged = comparison.tests["verdict"].isin(FLAGGED).sum()
    print(f"gradprobe bisect: {flagged} flagged tests against the good commit",
          file=sys.stderr)
    return BAD if flagged else GOOD


def _stash(repo: Path, stash: bool) -> bool:
    """Whether uncommitted changes were stashed; UserError when there are some and
    ``stash`` is False, or a bisection is already in progress."""
    if git(repo, "rev-parse", "--verify", "--quiet", "refs/bisect/bad", check=False).stdout:
        raise UserError(f"{repo}: a git bisect is already in progress; finish it with "
                        "`git bisect reset`")
    if not git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        return False
    if not stash:
        raise UserError(f"{repo}: uncommitted changes to tracked files; commit them, or "
                        "pass --stash to set them aside during the bisection")
    git(repo, "stash", "push", "--message", "gradprobe bisect")
    return True


def bisect(*, good: str, bad: str, config: str, repo: str | Path = ".",
           seeds: int | None = None, stash: bool = False) -> BisectResult:
    """Find the first commit between ``good`` and ``bad`` whose run of ``config`` the
    compare gate flags against the good commit's (module docstring)."""
    repo = repository(Path(repo))
    good_sha, bad_sha = _commit(repo, good, "--good"), _commit(repo, bad, "--bad")
    config = str(Path(config).resolve()) if Path(config).is_file() else config
    stashed = _stash(repo, stash)
    work = Path(tempfile.mkdtemp(prefix="gradprobe-bisect-"))
    command = [sys.executable, "-m", "gradprobe.bisection", config, str(work / "good"),
               str(work / "step"), str(seeds or 0)]
    try:
        _good_run(repo, good_sha, command, good, work)
        git(repo, "bisect", "start", bad_sha, good_sha, "--")
        try:
            done = subprocess.run(["git", "-C", str(repo), "bisect", "run", *command],
                                  env=_fresh_imports(work), check=False)
            first = git(repo, "rev-parse", "refs/bisect/bad").stdout.strip()
            log = git(repo, "bisect", "log").stdout
        finally:
            git(repo, "bisect", "reset", check=False)
    finally:
        if stashed:
            git(repo, "stash", "pop", check=False)
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode:
        raise UserError(f"git bisect run stopped (exit {done.returncode}); see its output")
    subject = git(repo, "log", "-1", "--format=%s", first).stdout.strip()
    return BisectResult(first, subject, log)


def _fresh_imports(work: Path) -> dict[str, str]:
    """The environment for runs at checked-out commits: no bytecode written or reused
    (a cached .pyc of another commit, same size and mtime second, would be imported)."""
    import os

    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPYCACHEPREFIX": str(work / "no-pycache")}


def _good_run(repo: Path, sha: str, command: list[str], rev: str, work: Path) -> None:
    """Run the config at the good commit, then check out what was checked out before."""
    head = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()
    original = head or git(repo, "rev-parse", "HEAD").stdout.strip()
    git(repo, "checkout", "--quiet", "--detach", sha)
    try:
        done = subprocess.run([*command, "--good"], env=_fresh_imports(work), check=False)
    finally:
        git(repo, "checkout", "--quiet", original)
    if done.returncode != GOOD:
        raise UserError(f"--good {rev}: the config does not run at that commit (see above)")


def main(argv: list[str]) -> int:
    """``python -m gradprobe.bisection CONFIG GOOD_RUN STEP_DIR SEEDS [--good]``: run at the
    checked-out commit; with ``--good`` make the good run, else one bisection step."""
    config, good_run, step_dir, seeds = argv[:4]
    seeds_value = int(seeds) or None
    if argv[4:] == ["--good"]:
        try:
            run_config(config, Path(good_run), seeds_value)
        except UserError as err:
            print(f"gradprobe bisect: {err}", file=sys.stderr)
            return SKIP
        return GOOD
    out = Path(step_dir)
    shutil.rmtree(out, ignore_errors=True)  # each step runs afresh, never resumes
    return step(config=config, good_run=Path(good_run), out=out, seeds=seeds_value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
