"""The modes: each chains the stages in its own order. Only this package knows the order.

    run(cfg) -> checks (every declared rule, then what no single setting says) -> the mode:
    zoom (pipeline/zoom.py), video (pipeline/clip.py; segments=auto: pipeline/segments.py), neuron
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from ..config import Config
from .checks import check, warn_about_settings, with_frames
from .context import Context, Launcher
from .outputs import absolute_inputs, resumed_config
from .sound import listen


def cores() -> int:
    """The CPU cores this process may use (its affinity: a container's or a cluster job's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(seconds: float = 0.2) -> float:
    """How many cores other programs keep busy now: /proc/stat sampled over `seconds` (Linux), else the
    1-minute load average, else none."""
    def times():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
        share = 1.0 - (idle1 - idle0) / max(1, total1 - total0)
        return share * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def automatic_threads(cfg: Config) -> int:
    """threads=0: the network's CPU threads, the cores nobody else uses. A thread pool larger than the idle
    cores waits for them at every step: beside one busy program, two threads on two cores took 4.7 s a demo
    frame against one thread's 2.4 s, while idle two took 0.9 s against 1.5 s (docs/benchmarks.md). A
    clip's flow workers count as busy."""
    flow = cfg.flow.workers if cfg.mode == "video" and cfg.flow.method != "none" else 0
    return max(1, min(cores(), round(cores() - busy_cores() - flow)))


def set_threads(cfg: Config) -> int:
    """Set torch's CPU threads for this render (threads=N, or automatic); returns how many."""
    import torch

    n = cfg.threads or automatic_threads(cfg)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def run(cfg: Config, typed: Sequence[str] = (), context: Optional[Context] = None) -> str:
    """Run the configured mode; returns the main output's path. `typed`: the settings the command line
    named, for warnings about those this mode ignores (not for a resumed render or a segment's job,
    which repeat a command already warned about); `context`: where it runs (default: the current folder,
    segments dreamed in this process)."""
    context = context or Context()
    resuming = bool(cfg.resume)
    if resuming:
        cfg = resumed_config(cfg)
    cfg = with_frames(listen(absolute_inputs(cfg)))  # a zoom to a song lasts as long as the song
    check(cfg)
    if not resuming and cfg.segment is None:
        warn_about_settings(cfg, typed)
    set_threads(cfg)
    if cfg.mode == "zoom":
        from .zoom import run_zoom

        return run_zoom(cfg, context)
    if cfg.mode == "video":
        from .clip import run_video

        return run_video(cfg, context)
    from .neuron import run_neuron

    return str(run_neuron(cfg, context)["grid"])


__all__ = ["Context", "Launcher", "run"]
