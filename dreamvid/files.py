"""Files that survive a crash of the machine, not only of dreamvid.

A finished file is written under a temporary name and renamed into place, so no half-written file ever
has the final name. After a power cut, though, the rename can reach the disk before the data it names:
a checkpoint would then point at empty frames and a finished video be an empty file, after dreamvid
had already removed the checkpoint it was made from. So the data is flushed to the disk before the
rename, and the folder after it.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

try:  # macOS: fsync leaves the data in the drive's cache; F_FULLFSYNC asks the drive to write it
    from fcntl import F_FULLFSYNC  # type: ignore[attr-defined]
except ImportError:
    F_FULLFSYNC = None

# Opening a folder to flush its entries works on POSIX systems; Windows neither needs nor allows it.
POSIX = os.name == "posix"
# Windows flushes only what is open for writing; elsewhere reading is enough (a read-only file is flushed too)
_FILE_MODE = os.O_RDONLY if POSIX else os.O_RDWR | getattr(os, "O_BINARY", 0)
THREADS = 8  # files flushed at once (a folder of frames: the disk works on several)


def flush(path: str) -> None:
    """Ask the OS to put `path` (a file, or a folder's list of entries) on the disk before returning.

    Best effort: a file system that cannot flush (some network or virtual ones) is left as it is.
    """
    folder = os.path.isdir(path)
    if folder and not POSIX:
        return
    try:
        fd = os.open(path, os.O_RDONLY if folder else _FILE_MODE)
    except OSError:
        return
    try:
        if F_FULLFSYNC is not None:
            import fcntl

            fcntl.fcntl(fd, F_FULLFSYNC)
        else:
            os.fsync(fd)
    except OSError:
        try:
            os.fsync(fd)
        except OSError:
            pass
    finally:
        os.close(fd)


def flush_all(paths: Sequence[str]) -> None:
    """`flush` each path, several at a time."""
    if len(paths) <= 1:
        for path in paths:
            flush(path)
        return
    with ThreadPoolExecutor(min(THREADS, len(paths)), thread_name_prefix="dreamvid-flush") as pool:
        list(pool.map(flush, paths))


def replace(tmp: str, path: str) -> None:
    """Rename the finished `tmp` (a file, or a folder of files) to `path`, its data on the disk first."""
    if os.path.isdir(tmp):
        flush_all([os.path.join(tmp, name) for name in sorted(os.listdir(tmp))])
    flush(tmp)
    os.replace(tmp, path)
    flush(os.path.dirname(os.path.abspath(path)))
