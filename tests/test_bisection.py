"""gradprobe bisect: the first commit of a user's repository whose gradients differ."""

from __future__ import annotations

import pytest
from support import git

from gradprobe.cli.main import main


def test_bisect_names_the_commit_that_changed_the_init(scratch_history, monkeypatch, capsys):
    repo, shas, _ = scratch_history
    monkeypatch.setenv("PYTHONPATH", str(repo))
    argv = ["bisect", "--good", shas[0], "--bad", "main", str(repo / "scratch.toml"),
            "--repo", str(repo)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"first commit whose gradients differ: {shas[3]} commit 4" in out
    # The branch is checked out again, clean, and no bisection is left behind.
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(repo, "bisect", "log", check=False) == ""


@pytest.mark.parametrize("argv,message", [
    (["--good", "nope", "--bad", "main"], "--good nope: not a commit in"),
    (["--good", "HEAD~1", "--bad", "main", "--dirty"],
     "uncommitted changes to tracked files; commit them, or pass --stash"),
])
def test_bisect_refusals(scratch_history, capsys, argv, message):
    repo, _, _ = scratch_history
    model = repo / "scratchnet.py"
    before = model.read_text(encoding="utf-8")
    if "--dirty" in argv:
        argv = argv[:-1]
        model.write_text(before + "# my uncommitted edit\n", encoding="utf-8")
    try:
        assert main(["bisect", *argv, str(repo / "scratch.toml"), "--repo", str(repo)]) == 2
    finally:
        text = model.read_text(encoding="utf-8")
        model.write_text(before, encoding="utf-8")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert text.endswith("# my uncommitted edit\n") == ("uncommitted" in message)
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"


def test_stash_sets_uncommitted_changes_aside(tmp_path):
    from support import scratch_repo

    from gradprobe.bisection import _stash

    repo = tmp_path / "repo"
    scratch_repo(repo, commits=1)
    assert _stash(repo, False) is False  # clean: nothing to do
    (repo / "scratchnet.py").write_text("# edited\n", encoding="utf-8")
    assert _stash(repo, True) is True
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    git(repo, "stash", "pop")
    assert (repo / "scratchnet.py").read_text(encoding="utf-8") == "# edited\n"
