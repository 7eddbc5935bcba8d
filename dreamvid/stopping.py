"""Stopping a render when asked: Ctrl-C (SIGINT), `kill`, `timeout`, `docker stop` or a cluster's
pre-emption (SIGTERM), and a closed terminal (SIGHUP) all stop it the same way.

During a render (`StopAfterFrame`) the first signal asks it to stop after the current frame, which is
then finished into a playable partial video with the command that resumes; a second signal stops at
once. Outside a render (`install`), SIGTERM and SIGHUP stop dreamvid the way Ctrl-C does (Python's
default for them is to die on the spot, skipping the clean-up that removes partial files). The exit
status is 128 + the signal's number, as a shell reports a command that a signal stopped: 130, 143, 129.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Dict, Optional

# The signals that stop a render, where the system has them (Windows has no SIGHUP)
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
NAMES = {getattr(signal, name): name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}


def exit_code(signum: int) -> int:
    return 128 + int(signum)


class Stopped(KeyboardInterrupt):
    """A signal stopped dreamvid at once; `exit_code` is the status a shell expects for it."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(NAMES.get(signum, str(signum)))
        self.signum, self.exit_code = signum, exit_code(signum)


def say(message: str) -> None:
    """A line on stderr, if there still is one to write to (after a hang-up there may be none)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _hung_up(signum: int) -> None:
    """After SIGHUP the terminal is gone: what dreamvid writes to it goes nowhere instead of failing."""
    if signum != getattr(signal, "SIGHUP", None):
        return
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            pass


def _raise(signum: int, frame: Any) -> None:
    _hung_up(signum)
    raise Stopped(signum)


def install() -> None:
    """SIGTERM and SIGHUP stop dreamvid like Ctrl-C: as an exception, so that partial files are removed."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        if signum != signal.SIGINT:
            signal.signal(signum, _raise)


class StopAfterFrame:
    """While in effect, the first stop signal sets `requested` (its number) and the render stops after
    the current frame; a second one raises `Stopped` at once. Only the main thread can take signals:
    elsewhere (a thread of the caller's) this does nothing."""

    def __init__(self) -> None:
        self.requested: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        _hung_up(signum)
        if self.requested is not None:
            raise Stopped(signum)
        self.requested = signum
        again = "Ctrl-C again" if signum == signal.SIGINT else "the same signal again"
        why = "" if signum == signal.SIGINT else f"{NAMES.get(signum, signum)}: "
        say(f"\ndreamvid: {why}stopping after this frame ({again} to stop now)")

    def __enter__(self) -> "StopAfterFrame":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
