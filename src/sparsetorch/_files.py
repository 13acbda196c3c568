"""Durable files: atomic writes that follow the umask, stale temp files, advisory locks.

* :func:`atomic_write` writes a temp file next to the target (``.<name>.<pid>.<hex>.tmp``),
  fsyncs it, renames it over the target and fsyncs the directory: a crash leaves the old file
  or the new one, never a mix. A new file gets the permissions the umask gives (``0o666 &
  ~umask``); a replaced file keeps its own.
* :func:`remove_stale_temps` deletes the temp files a killed writer left behind. Only a
  process holding the lock that covers those files may call it (a live writer's temp file
  would go too).
* :func:`locked` holds an advisory lock (``fcntl.flock``) on a lock file while a run dir or a
  checkpoint is written. A second process waits for it or is refused with :class:`InUse`,
  naming the holder's pid. The lock file is removed on release; the kernel drops the lock of a
  killed process, so a stale lock file never blocks anyone. Without ``fcntl`` (Windows)
  nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

_TEMP = r"\.(?:\d+\.[0-9a-f]{8}|[a-z0-9_]{8})\.tmp"  # ours, and tempfile.mkstemp's before
TEMP_PATTERN = re.compile(r"^\..+" + _TEMP + "$")


class InUse(ValueError):
    """Another process holds the lock of a run dir, lottery dir or checkpoint."""


def temp_path(path: Path) -> Path:
    """A fresh temp file name next to ``path`` (unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def is_temp_of(name: str, target: str) -> bool:
    """Whether ``name`` is a temp file an atomic write of ``target`` makes."""
    return re.fullmatch(r"\." + re.escape(target) + _TEMP, name) is not None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(temp_path)`` atomically and durably; see the module
    docstring. ``write`` may replace the temp file (safetensors does): the permissions are
    set after it."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
        try:
            mode = os.stat(path).st_mode if path.exists() else os.fstat(fd).st_mode
        finally:
            os.close(fd)
        write(tmp)
        os.chmod(tmp, mode & 0o7777)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path, target: str | None = None) -> list[Path]:
    """Delete the temp files of atomic writes in ``folder`` (of ``target`` only, if given);
    returns them. Call it only while holding the lock that covers their writers."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        stale = is_temp_of(entry.name, target) if target else TEMP_PATTERN.match(entry.name)
        if stale and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def locked(lock_file: Path, *, wait: bool, busy: str = "") -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_file`` (created if missing, removed on
    release). Another holder: wait for it (``wait``), or raise :class:`InUse` with ``busy``
    and the holder's pid."""
    if fcntl is None:
        yield
        return
    fd = _acquire(lock_file, wait, busy)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        lock_file.unlink(missing_ok=True)  # while held: a waiter then retries on a new file
        os.close(fd)


def _acquire(lock_file: Path, wait: bool, busy: str) -> int:
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InUse(busy.format(pid=holder)) from None
        except BaseException:
            os.close(fd)
            raise
        # the previous holder removes the file on release: locked an unlinked file? retry
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return "?"
    return text if text.isdigit() else "?"
