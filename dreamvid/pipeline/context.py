"""Where a render runs: what the command line (or a test, or a script) tells the pipeline about it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..config import Config

# launch(cfg, output, segments) dreams those segments of a segments=auto render as jobs; the exit status
Launcher = Callable[[Config, str, Sequence[int]], int]


@dataclass(frozen=True)
class Context:
    """folder: where an output without output= goes (the command line's run folder; a sweep job's own);
    launch: runs segment jobs (the command line's launcher; None: one after the other in this process);
    elsewhere: the launcher runs them on other machines (a cluster), whose devices this one cannot judge;
    report: told of each setting that ran otherwise than given."""

    folder: str = field(default_factory=os.getcwd)
    launch: Optional[Launcher] = None
    elsewhere: bool = False
    # report(setting, value): a setting ran with another value than it was given (dream.octaves that the
    # frame's size capped), for a sweep's gallery to show what ran
    report: Optional[Callable[[str, Any], None]] = None
