"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file gradprobe writes goes to a hidden temporary name in the same directory, is
flushed to disk, and is renamed over the target (``os.replace`` is atomic on POSIX and
Windows). A run killed at any moment leaves at most a hidden ``.*.tmp`` file, which readers
ignore and the next write replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from gradprobe.core.errors import UserError


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync the result, then rename it to ``path``."""
    path = Path(path)
    check_replaceable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err}); check free space "
                        "and permissions of the output directory") from None
    finally:
        _remove_quietly(tmp)
    return path


def check_replaceable(path: Path) -> None:
    """Refuse to rename over anything but a regular file (or a link): ``os.replace`` would
    swap a device, a FIFO or a socket for a plain file (``report -o /dev/full`` run as root
    replaced /dev/full), and fails late and obscurely on a directory."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err}); choose another "
                        "output path") from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise UserError(f"{path}: is {kind}, not a file; gradprobe replaces files only, so "
                        "choose another output path")


def _remove_quietly(tmp: Path) -> None:
    # On a read-only or vanished directory the cleanup fails too; raising here would hide
    # the one-line error above behind a traceback.
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def ensure_directory(path: str | Path) -> Path:
    """``mkdir -p path``, or a one-line :class:`UserError` naming it when that is impossible
    (read-only file system, no permission, a file in the way)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create this directory ({err.strerror or err}); "
                        "choose a writable output location") from None
    return path


def replace_directory_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Build a whole directory with ``write(tmp_dir)`` in a hidden sibling, then swap it in
    for ``path``: readers see the old directory or the whole new one, never a mix.

    POSIX has no atomic exchange of two non-empty directories in Python, so the old one is
    first renamed aside: a kill between the two renames leaves no ``path`` (a reader says
    "not written yet"), still never a mix. Leftovers of killed writers (``.NAME.PID.tmp``,
    ``.NAME.PID.old`` of a dead PID) are removed first."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise UserError(f"{path}: is a file, not a directory; gradprobe would replace it "
                        "with a directory, so move it away or choose another location")
    _remove_dead_leftovers(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        if path.is_dir():
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err}); check free space "
                        "and permissions of the output directory") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _remove_dead_leftovers(path: Path) -> None:
    """Delete ``.NAME.PID.tmp`` / ``.NAME.PID.old`` siblings whose writer no longer runs
    (a live PID may be another process writing the same directory now)."""
    for leftover in path.parent.glob(f".{path.name}.*.*"):
        pid = leftover.name[len(path.name) + 2:].rsplit(".", 1)[0]
        if pid.isdigit() and leftover.suffix in (".tmp", ".old") and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def copy_file_atomic(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` so that readers never see a partial copy."""
    return write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_parquet_atomic(path: str | Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
