"""Progress of a render: a bar on a terminal, a line every few seconds anywhere else.

A bar redrawn in place is for a terminal; written to a file or a cluster's log it becomes a line per
update (256 for one neuron grid). There, `Lines` writes one line when LINE_EVERY seconds have passed
since the last, and one at the end: a slow render gets a line per frame, a fast one a line every 10 s.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

LINE_EVERY = 10.0  # seconds between progress lines where stderr is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Lines:
    """tqdm's interface (update, n, refresh, close, a context manager) as plain lines."""

    def __init__(self, total: Optional[int], desc: str, initial: int = 0, unit: str = "frame",
                 stream: Optional[TextIO] = None, every: float = LINE_EVERY, disable: bool = False):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream, self.disable = stream, disable
        self.n = self._said = self._first = initial
        self._start = self._last = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        self.refresh()

    def refresh(self) -> None:
        if not self.disable and time.monotonic() - self._last >= self.every:
            self._say()

    def _say(self) -> None:
        now = time.monotonic()
        done = self.n - self._first
        parts = [f"{self.n}/{self.total}" if self.total else f"{self.n}", f"{self.unit}s"]
        if self.total:
            parts.append(f"({100 * self.n / self.total:.0f}%)")
        if done > 0:
            each = (now - self._start) / done
            parts.append(f"{each:.2f} s/{self.unit}" if each >= 1 else f"{1 / each:.1f} {self.unit}s/s")
            if self.total and self.n < self.total:
                parts.append(f"{_clock(each * (self.total - self.n))} left")
        try:
            print(f"dreamvid: {self.desc} " + " ".join(parts), file=self.stream or sys.stderr, flush=True)
        except (OSError, ValueError):  # no stderr to write to any more (a closed terminal)
            pass
        self._last, self._said = now, self.n

    def close(self) -> None:
        if not self.disable and self.n != self._said:
            self._say()
        self.disable = True

    def __enter__(self) -> "Lines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: Optional[int], desc: str, enabled: bool, initial: int = 0, unit: str = "frame") -> Any:
    """A progress display: tqdm's bar on a terminal, `Lines` elsewhere; shows nothing unless enabled."""
    try:
        terminal = sys.stderr.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if not terminal:
        return Lines(total, desc, initial=initial, unit=unit, disable=not enabled)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, initial=initial, dynamic_ncols=True,
                leave=True)
