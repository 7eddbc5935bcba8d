"""Files that survive a crash of the machine, not only of dreamvid.

A finished file is written under a temporary name and renamed into place, so no half-written file ever
has the final name. After a power cut, though, the rename can reach the disk before the data it names:
a checkpoint would then point at empty frames and a finished video be an empty file, after dreamvid
had already removed the checkpoint it was made from. So the data is flushed to the disk before the
rename, and the folder after it.
"""
from __future__ import annotations

import os
from typing import Iterable

# Opening a folder to flush its entries works on POSIX systems; Windows neither needs nor allows it.
_FOLDERS = os.name == "posix"


def flush(path: str) -> None:
    """Ask the OS to put `path` (a file, or a folder's list of entries) on the disk before returning.

    Best effort: a file system that cannot flush (some network or virtual ones) is left as it is.
    """
    if os.path.isdir(path) and not _FOLDERS:
        return
    try:
        fd = os.open(path, os.O_RDONLY if os.path.isdir(path) else os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flush_all(paths: Iterable[str]) -> None:
    for path in paths:
        flush(path)


def replace(tmp: str, path: str) -> None:
    """Rename the finished `tmp` (a file, or a folder of files) to `path`, its data on the disk first."""
    if os.path.isdir(tmp):
        flush_all(os.path.join(tmp, name) for name in sorted(os.listdir(tmp)))
    flush(tmp)
    os.replace(tmp, path)
    flush(os.path.dirname(os.path.abspath(path)))
