"""Atomic writes, and one-line errors (exit 2) where the output location cannot be written.

Tests run as root in CI, where permission bits do not stop a write; a regular file where a
directory is needed fails for every user, so it stands in for a read-only location.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from gradprobe.cli.main import main
from gradprobe.core.atomic_files import copy_file_atomic, ensure_directory, write_text_atomic
from gradprobe.core.errors import UserError


def one_line_error(capsys, argv: list[str], path: Path) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(path) in err
    assert "Traceback" not in err
    return err


def test_write_into_a_missing_directory_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot write"):
        write_text_atomic(tmp_path / "absent" / "x.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_atomic_copy_and_directory(tmp_path):
    source = write_text_atomic(tmp_path / "a.txt", "payload")
    target = copy_file_atomic(source, ensure_directory(tmp_path / "d" / "e") / "b.txt")
    assert target.read_text() == "payload"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]  # no temporary left
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot create this directory"):
        ensure_directory(tmp_path / "file" / "sub")


def test_analyze_where_the_analysis_directory_cannot_be_made(capsys, smoke_run, tmp_path):
    """Bug: analyze/report/publish/compare raised OSError tracebacks (exit 1) when their
    output location was not writable."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    (run / "analysis").write_text("a file in the way")
    one_line_error(capsys, ["analyze", str(run)], run / "analysis")


def test_report_publish_and_compare_to_unwritable_places(capsys, smoke_analysis, tmp_path):
    run = smoke_analysis.run_dir
    blocker = tmp_path / "afile"
    blocker.write_text("")
    one_line_error(capsys, ["report", str(run), "-o", str(blocker / "x.html")], blocker)
    one_line_error(capsys, ["publish", "--reports", str(run.parent), "--out",
                            str(blocker / "site")], blocker)
    one_line_error(capsys, ["compare", str(run), str(run), "--out", str(blocker / "cmp")],
                   blocker)
    assert blocker.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_cli_turns_environment_write_errors_into_one_line(capsys, monkeypatch):
    import gradprobe.cli.main as cli

    def fails_with(error):
        args = cli.build_parser().parse_args(["analyze", "x"])
        args.func = lambda _: (_ for _ in ()).throw(error)
        monkeypatch.setattr(cli, "build_parser", lambda: _Parsed(args))

    fails_with(OSError(errno.EROFS, "Read-only file system", "/ro/run/.lock"))
    assert cli.main(["analyze", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: /ro/run/.lock: cannot write (Read-only file system); choose a writable output "
        "location or free some space")
    fails_with(OSError(errno.EIO, "Input/output error", "/dev/x"))  # not the user's doing
    with pytest.raises(OSError):
        cli.main(["analyze", "x"])


class _Parsed:
    """A parser stand-in that returns already parsed arguments."""

    def __init__(self, args):
        self.args = args

    def parse_args(self, argv):
        return self.args


def test_special_files_are_never_replaced(tmp_path):
    # Regression (issue 14, item 11): os.replace swapped a device for a plain file
    # (`report -o /dev/full` as root replaced /dev/full). A FIFO stands in for the device.
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="pipe: is a device, FIFO or socket, not a file"):
        write_text_atomic(fifo, "x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(UserError, match="is a directory, not a file"):
        write_text_atomic(tmp_path, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left


def test_replace_directory_is_all_or_nothing(tmp_path):
    from gradprobe.core.atomic_files import replace_directory_atomic

    target = tmp_path / "out"
    replace_directory_atomic(target, lambda d: (d / "a").write_text("old"))

    def fails(d: Path) -> None:
        (d / "a").write_text("new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="cannot write"):
        replace_directory_atomic(target, fails)
    assert (target / "a").read_text() == "old"
    replace_directory_atomic(target, lambda d: (d / "b").write_text("new"))
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no hidden leftovers
    (tmp_path / "file").write_text("keep")
    with pytest.raises(UserError, match="is a file, not a directory"):
        replace_directory_atomic(tmp_path / "file", lambda d: None)
    assert (tmp_path / "file").read_text() == "keep"
