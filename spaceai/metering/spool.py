"""The ledger's spool: every usage row appended to a local file before the answer completes.

A write to the page cache survives the death of the process that made it (kill -9 included),
so a row is safe once :meth:`Spool.append` returns; the writer process copies it into the
database later (see :mod:`spaceai.metering.ledger_process`) and fsyncs the file on an
interval, which bounds what a crash of the whole machine can lose.

Each gateway process appends to segments of its own (``<instance>-<seq>.spool``) and holds an
exclusive ``flock`` on each until the writer has committed all of it. A segment nobody holds is
an orphan, left by a process that died: the next process to start in the same folder writes it
to the database before it admits traffic (:func:`orphans`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("spaceai.ledger")

SUFFIX = ".spool"


def spool_dir(base: str | None, database_target: str) -> str:
    """The folder of one database's spool: rows replayed from it go to that database only."""
    digest = hashlib.sha256(database_target.encode()).hexdigest()[:12]
    root = Path(base) if base else Path(".spaceai-ledger")
    path = root / digest
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(path.resolve())


def _lock(path: str, flags: int) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None if another process holds it."""
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def orphans(folder: str) -> list[tuple[str, int]]:
    """Segments in ``folder`` that no live process holds: (path, fd holding their lock)."""
    found = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(SUFFIX):
            continue
        path = os.path.join(folder, name)
        try:
            fd = _lock(path, os.O_RDONLY)
        except FileNotFoundError:  # just finished by its own writer
            continue
        if fd is not None:
            found.append((path, fd))
    return found


class Spool:
    """The segments one gateway process appends its rows to."""

    def __init__(self, folder: str, rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self.instance = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self.path = ""
        self._fd = -1
        self.size = 0  # bytes appended to the current segment
        self.held: dict[str, int] = {}  # segment -> lock fd, until the writer finished it
        self.appended = 0  # bytes appended to every segment of this process, in total

    def open_segment(self) -> str:
        """Start a new segment (at start and on rotation); returns its path."""
        self._seq += 1
        path = os.path.join(self.folder, f"{self.instance}-{self._seq:06d}{SUFFIX}")
        fd = _lock(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        assert fd is not None, "a new spool segment is never locked by another process"
        self.path, self._fd, self.size = path, fd, 0
        self.held[path] = fd
        return path

    def append(self, data: bytes) -> None:
        """Append rows (whole lines); returns once they are in the page cache."""
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)
        self.appended += len(data)

    def release(self, path: str) -> None:
        """The writer finished ``path`` (and removed it): let go of its lock."""
        fd = self.held.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for path in list(self.held):
            self.release(path)
