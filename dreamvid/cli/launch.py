"""The command line's side of a run: its folder and its launcher of segment jobs, from Hydra, for the pipeline
(`pipeline.Context`); the jobs repeat the running command's own overrides."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import List, Sequence

from hydra.core.hydra_config import HydraConfig

from .. import segments, stopping, sweep
from ..config import Config
from ..pipeline.context import Context

# Overrides of the command that the segment jobs must not inherit (dreamvid sets its own).
NOT_PASSED = ("segment", "output", "resume", "hydra.mode", "hydra.job.num", "hydra.job.id")


# (the jobs keep Hydra's record and log in their folders, whatever the parent run left out)
NOT_PASSED_PREFIX = ("hydra.run.", "hydra.sweep.", "hydra.callbacks.dreamvid.gallery", "hydra.output_subdir",
                     "hydra/job_logging")


# Launchers whose jobs run on other machines (dreamvid's presets and the plugins' own configs)
ELSEWHERE = ("slurm", "submitit_slurm", "ray_cluster", "ray", "ray_aws")


def job_overrides(task: Sequence[str], hydra: Sequence[str]) -> List[str]:
    """The command's own overrides (settings and launcher choice) that every segment job repeats."""
    def key(o: str) -> str:
        return o.lstrip("+~").split("=", 1)[0]

    return [o for o in list(task) + list(hydra) if key(o) not in NOT_PASSED and not key(o).startswith(NOT_PASSED_PREFIX)]


def quote(value: str) -> str:
    """A path as one quoted Hydra override value (spaces, commas and '=' stay literal)."""
    return "'" + value.replace("'", "\\'") + "'"


def config_arguments(hc) -> List[str]:
    """--config-name and --config-dir/--config-path of the running command, for the jobs to repeat."""
    args = ["--config-name", hc.job.config_name] if hc.job.config_name else []
    for source in hc.runtime.config_sources:
        path = source.path.split("://", 1)[-1]
        if source.provider == "command-line" and source.schema == "file":
            args += ["--config-dir", path]
        elif source.provider == "main" and source.schema == "file":
            args += ["--config-path", path]
    return args


@contextmanager
def _passed_on(proc: subprocess.Popen):
    """A stop signal for this process (Ctrl-C, SIGTERM, SIGHUP) goes to the jobs' process group instead,
    where each job stops after its frame like a render of its own; this process waits for them."""
    def forward(signum, frame) -> None:
        try:
            os.killpg(proc.pid, signum)
        except OSError:  # the jobs have ended
            pass

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in stopping.SIGNALS} if main else {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def launcher(cfg: Config, output: str, todo: Sequence[int]) -> int:
    """Dream the segments `todo` of a segments=auto render as one Hydra multirun through the configured
    launcher (the running command's overrides, its output and the segments' own folder); its exit status."""
    hc = HydraConfig.get()
    cmd = [sys.executable, "-m", "dreamvid", "-m", *config_arguments(hc),
           *job_overrides(hc.overrides.task, hc.overrides.hydra),
           f"output={quote(output)}", "segment=" + ",".join(str(i) for i in todo),
           f"hydra.sweep.dir={quote(os.path.join(segments.folder(output), 'jobs'))}",
           "hydra.callbacks.dreamvid.gallery=false"]
    # A process group of their own (a session): a signal for dreamvid reaches them once, passed on, and the
    # shell's own process group (a script that ran dreamvid) is never signalled.
    proc = subprocess.Popen(cmd, start_new_session=True)
    with _passed_on(proc):
        return proc.wait()


def context() -> Context:
    """Where this job runs, for the pipeline: Hydra's run folder (each sweep job has its own), the launcher
    for segment jobs, and whether that launcher runs them on other machines."""
    hc = HydraConfig.get()
    return Context(folder=hc.runtime.output_dir, launch=launcher,
                   elsewhere=hc.runtime.choices.get("hydra/launcher") in ELSEWHERE, report=sweep.ran)
