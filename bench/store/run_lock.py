"""One writer per run directory: an advisory lock held for the whole run.

``fcntl.flock`` locks are released by the kernel when the holding process dies, even by
SIGKILL, so a crashed run never leaves a stale lock behind: the next run simply takes it.
A second ``gradprobe run`` on the same directory fails at once with a message naming the
holder, instead of interleaving its writes with the first one's. (flock is local to a
machine; on network filesystems the lock may not be honoured across machines.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gradprobe.core.errors import UserError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock, or raise UserError if another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(run_dir, fd) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _held(run_dir: Path, fd: int) -> UserError:
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    return UserError(f"{run_dir}: another gradprobe run (pid {holder}) is writing to this "
                     "directory; wait for it to finish, or use another --out")


def lock_is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run directory's lock (False without a lock file)."""
    try:
        check_unlocked(run_dir)
    except UserError:
        return True
    return False


def check_unlocked(run_dir: Path) -> None:
    """Raise :func:`run_lock`'s error now if another process holds the lock, without
    creating a lock file. Checks made before taking the lock call this first: a run in its
    first moments has a temporary manifest beside the lock, and a second run was told the
    directory was "not a gradprobe run directory" instead of who is writing it."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # no lock file (or unreadable): run_lock decides
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held(run_dir, fd) from None
    finally:
        os.close(fd)


# The temporaries of cell files (gradprobe.core.atomic_files names them .<name>.<pid>.tmp);
# other
# hidden files are not gradprobe's, so they are left alone.
CELL_TEMPORARIES = ".cell-*.parquet.*.tmp"


def remove_stale_temporaries(records_dir: Path) -> int:
    """Delete temporary cell files left by a killed writer; call only under the lock."""
    removed = 0
    for path in Path(records_dir).glob(CELL_TEMPORARIES):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
