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


def copy_file_atomic(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` so that readers never see a partial copy."""
    return write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_parquet_atomic(path: str | Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
