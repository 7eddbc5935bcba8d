"""Finished files put into place without losing anything: neither after a crash of the machine, nor
anything of the user's that holds the name.

A finished file is written under a temporary name of its own and moved to its final name when whole,
so no half-written file ever has that name. After a power cut, though, the rename can reach the disk
before the data it names: a checkpoint would then point at empty frames and a finished video be an
empty file, after dreamvid had already removed the checkpoint it was made from. So the data is
flushed to the disk before the move, and the folder after it.

The move never replaces what it was not allowed to (`place`): a file that the user made at the
output's path while the render ran stays, and the finished render is kept under the first free name
beside it (`dream-2.mp4`). Temporary names are created exclusively (`temp_file`), so they cannot be
anybody else's either.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence

from .errors import DreamvidError

try:  # macOS: fsync leaves the data in the drive's cache; F_FULLFSYNC asks the drive to write it
    from fcntl import F_FULLFSYNC  # type: ignore[attr-defined]
except ImportError:
    F_FULLFSYNC = None

# Opening a folder to flush its entries works on POSIX systems; Windows neither needs nor allows it.
POSIX = os.name == "posix"
# Windows flushes only what is open for writing; elsewhere reading is enough (a read-only file is flushed too)
_FILE_MODE = os.O_RDONLY if POSIX else os.O_RDWR | getattr(os, "O_BINARY", 0)
THREADS = 8  # files flushed at once (a folder of frames: the disk works on several)
KEPT_NAMES = 1000  # dream-2.mp4 ... dream-1000.mp4: where a render goes when its name was taken meanwhile
TEMP_SUFFIX = ".partial"
MARKER = ".dreamvid"  # in every folder dreamvid makes beside an output: what it may remove there is its own
# The process's umask, read once while it starts (reading it means setting it): temporary files are
# created private, and a finished one gets the permissions any new file would have.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


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


def _flush_tree(tmp: str) -> None:
    if os.path.isdir(tmp):
        flush_all([os.path.join(tmp, name) for name in sorted(os.listdir(tmp))])
    flush(tmp)


def replace(tmp: str, path: str) -> None:
    """Rename the finished `tmp` (a file, or a folder of files) to `path`, its data on the disk first.

    For dreamvid's own files (a checkpoint's state, a plan): whatever is at `path` is replaced.
    """
    _flush_tree(tmp)
    os.replace(tmp, path)
    flush(os.path.dirname(os.path.abspath(path)))


class Identity(NamedTuple):
    """What was at a path when it was looked at: the same file is still there when all of it matches."""

    device: int
    inode: int
    mtime_ns: int
    size: int
    folder: bool


def identity(path: str) -> Optional[Identity]:
    """The identity of what is at `path` now (not following a link), None when nothing is."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return Identity(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, os.path.isdir(path) and not os.path.islink(path))


def temp_file(folder: str, name: str) -> str:
    """A new, empty file in `folder` for writing `name` into, created exclusively: `NAME.xxxxxxxx.partial`."""
    fd, path = tempfile.mkstemp(prefix=name + ".", suffix=TEMP_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    except (AttributeError, OSError):  # not POSIX
        pass
    os.close(fd)
    return path


def temp_folder(folder: str, name: str) -> str:
    """A new, empty folder in `folder` for writing `name`'s files into, created exclusively."""
    path = tempfile.mkdtemp(prefix=name + ".", suffix=TEMP_SUFFIX, dir=folder)
    try:
        os.chmod(path, 0o777 & ~_UMASK)
    except OSError:
        pass
    return path


def kept_name(path: str, n: int) -> str:
    """The n-th name for a finished file whose own name was taken: dream.mp4 -> dream-2.mp4 (n=2)."""
    head, tail = os.path.split(path.rstrip("/").rstrip(os.sep))
    stem, ext = os.path.splitext(tail)
    if not stem:  # a name that is all extension (".mp4")
        stem, ext = tail, ""
    return os.path.join(head, f"{stem}-{n}{ext}")


def place(tmp: str, path: str, allowed: Optional[Identity] = None,
          discard: Optional[Callable[[str], None]] = None) -> str:
    """Move the finished `tmp` (a file, or a folder of files) to `path`, its data on the disk first,
    without replacing anything there except `allowed`: what was at `path` when the user allowed it to be
    replaced (overwrite=true), if that very file is still there. A folder is not replaced in one step:
    `discard(path)` removes what may go of it (what it leaves keeps the name taken).

    Returns where the file went: `path`, or, when something else holds that name (made while the render
    ran), the first free name beside it (`kept_name`); nothing at either name is lost.
    """
    _flush_tree(tmp)
    if allowed is not None and identity(path) == allowed:
        if not allowed.folder:
            os.replace(tmp, path)
            flush(os.path.dirname(os.path.abspath(path)))
            return path
        if discard is not None:
            discard(path)
    for n in range(1, KEPT_NAMES + 1):
        target = path if n == 1 else kept_name(path, n)
        if move_no_clobber(tmp, target):
            flush(os.path.dirname(os.path.abspath(target)))
            return target
    raise FileExistsError(errno.EEXIST, f"{path} and the {KEPT_NAMES - 1} names beside it are all taken", path)


def move_no_clobber(src: str, dst: str) -> bool:
    """Rename `src` to `dst` only if nothing is at `dst`; False (and `src` left as it is) if something is.

    Atomic where the system has a rename that refuses to replace (Linux's renameat2), else a hard link
    for a file (atomic too) or, for a folder, a look first: a rename can then replace at most an empty
    folder made in between, never a file or a folder with anything in it.
    """
    try:
        return _rename_noreplace(src, dst)
    except NotImplementedError:
        pass
    if not os.path.isdir(src):
        try:
            os.link(src, dst)
        except FileExistsError:
            return False
        except OSError as e:  # a file system without hard links (FAT, some network ones)
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
        else:
            os.unlink(src)
            return True
    if os.path.lexists(dst):
        return False
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            return False
        raise
    return True


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_renameat2 = None
if sys.platform.startswith("linux"):
    try:
        _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        _renameat2.restype = ctypes.c_int
    except (AttributeError, OSError):  # a C library older than glibc 2.28, or none that ctypes can open
        _renameat2 = None


def _rename_noreplace(src: str, dst: str) -> bool:
    """renameat2(RENAME_NOREPLACE); NotImplementedError where the system or the file system lacks it."""
    if _renameat2 is None:
        raise NotImplementedError
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        return False
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        raise NotImplementedError
    raise OSError(err, os.strerror(err), src, None, dst)


def remove(path: str) -> None:
    """Remove a file or a folder of dreamvid's own making, if it is there."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass


# -- folders of dreamvid's own beside an output ----------------------------------------------------

def owned(folder: str) -> bool:
    """Whether `folder` is one dreamvid made (it carries the marker)."""
    return os.path.isfile(os.path.join(folder, MARKER))


def listing(names: Sequence[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def claim_folder(folder: str, what: str, ours: Callable[[str], bool], overwrite: bool = False,
                 earlier: Optional[Callable[[List[str]], Optional[str]]] = None) -> None:
    """Make `folder` dreamvid's own for `what` ("OUTPUT's checkpoint"), creating it with the marker, or
    refuse in one line. A folder of that name without the marker is the user's: refused, or with
    overwrite=true used as it is when none of its files has a name dreamvid writes there (`ours`);
    either way nothing in it is replaced or removed. `earlier(names)`: a message for a folder an earlier
    dreamvid left (None when it is not one)."""
    for _ in range(10):  # until the folder is found or made (another process may be making it too)
        if os.path.isdir(folder) and not os.path.islink(folder):
            if owned(folder):
                return
            names = os.listdir(folder)
            why = earlier(names) if earlier is not None else None
            if why:
                raise DreamvidError(why)
            clash = [n for n in names if ours(n)]
            if not overwrite or clash:
                holds = f"it holds {listing(names)}" if names else "it is empty"
                fix = "move it away, or choose another output=" + \
                      ("" if clash else " (overwrite=true renders beside what it holds, and leaves that there)")
                raise DreamvidError(f"{folder} is not a folder dreamvid made ({holds}), and dreamvid keeps {what} "
                                    f"under that name: {fix}")
            _write_marker(folder, what)
            return
        if os.path.lexists(folder):
            raise DreamvidError(f"{folder} is a file, and dreamvid keeps {what} in a folder of that name: move it "
                                f"away, or choose another output=")
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        except OSError as e:
            raise DreamvidError(f"cannot write in output folder {os.path.dirname(folder)}: {e.strerror}") from None
        _write_marker(folder, what)
        return
    raise DreamvidError(f"cannot claim {folder}: it keeps changing")


def _write_marker(folder: str, what: str) -> None:
    try:
        with open(os.path.join(folder, MARKER), "w") as f:
            f.write(f"dreamvid keeps {what} here; it removes only the files it wrote\n")
    except OSError as e:
        raise DreamvidError(f"cannot write in {folder}: {e.strerror}") from None


def release_folder(folder: str, ours: Callable[[str], bool]) -> List[str]:
    """Remove what dreamvid wrote in its `folder` (the entries `ours` names, and the marker), then the folder
    if nothing else is left; returns the names of what is left (files that are not dreamvid's)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    left = []
    for name in names:
        if name == MARKER:
            continue
        if ours(name):
            remove(os.path.join(folder, name))
        else:
            left.append(name)
    remove(os.path.join(folder, MARKER))  # the folder is the user's again, with what they put in it
    if not left:
        try:
            os.rmdir(folder)
        except OSError:  # something appeared meanwhile: it stays, and so does the folder
            pass
    return left
