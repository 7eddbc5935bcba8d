"""Sweeps (`dreamvid -m ...`): the Hydra callback that looks after each job and the sweep as a whole.

Each job, in the process that runs it: one GPU per worker under the joblib launcher, GPU memory
released when it ends, and its outcome in `job.json` beside its video. The sweep, in the process
that launched it: a contact sheet and an HTML gallery in the sweep folder, and the list of failed
jobs, which turns into the command's exit status. A failed job is reported and the sweep goes on.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any, List, Optional, Sequence

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

STATUS_FILE = "job.json"  # a job's outcome, written when it ends
ERROR_FILE = "error.txt"  # why a job failed, written when it fails
GPUS_ENV = "DREAMVID_SWEEP_GPUS"  # the GPUs a sweep's workers share, set by the launching process
CLOCK_SLACK = 5.0  # seconds a job's files may seem older than the sweep's start (clocks of other machines)

# Module state, per process: the job running now, and the failures the exit status reports.
_job = {"started": 0.0, "error": None}
_failed: List[str] = []  # jobs that failed in this process (the basic launcher runs them all here)
_sweep_failed: List[str] = []  # failed jobs of the last sweep, found by on_multirun_end
_slot_lock: Any = None  # the open lock file that holds this worker's GPU slot for its lifetime
_pinned: Optional[str] = None  # the GPU this worker was given


def gpu_count() -> int:
    """The number of GPUs, counted through NVML where possible so that CUDA itself is not started."""
    import torch

    return torch.cuda.device_count()


OmegaConf.register_new_resolver("dreamvid.gpus", lambda: max(1, gpu_count()), replace=True)


def failures() -> List[str]:
    """The jobs that failed in the last sweep (empty after a single run or a clean sweep)."""
    return list(dict.fromkeys(_failed + _sweep_failed))


def _describe_job() -> str:
    from hydra.core.hydra_config import HydraConfig

    try:
        hc = HydraConfig.get()
    except ValueError:
        return "job"
    return f"job {hc.job.num} ({' '.join(hc.overrides.task)})"


def _job_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def job_failed(error: BaseException, verbose: bool = False) -> None:
    """Report a sweep job's failure in one line, keep the details in its folder, and carry on.

    A DreamvidError is the user's to fix and its message says how; anything else is unexpected and
    its traceback goes into the job's `error.txt` (and onto stderr when `verbose`).
    """
    from .errors import DreamvidError

    expected = isinstance(error, DreamvidError)
    message = str(error) if expected else f"{type(error).__name__}: {error}"
    detail = message if expected else "".join(traceback.format_exception(error))
    who = _describe_job()
    path = os.path.join(_job_dir(), ERROR_FILE)
    try:
        with open(path, "w") as f:
            f.write(detail if detail.endswith("\n") else detail + "\n")
    except OSError:
        path = ""
    _job["error"] = message
    _failed.append(who)
    where = "" if expected or not path else f" (traceback in {path})"
    print(f"dreamvid: error: {who}: {message.splitlines()[0] if message else type(error).__name__}{where}",
          file=sys.stderr, flush=True)
    if verbose and not expected:
        print(detail, file=sys.stderr, end="", flush=True)


def _visible_gpus() -> List[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(gpu_count())]


def slot_folder(key: str) -> str:
    """Where the workers of the sweep `key` keep their slot locks: a local disk, where locks work."""
    return os.path.join(tempfile.gettempdir(), "dreamvid-gpu-slots-" + hashlib.sha1(key.encode()).hexdigest()[:12])


def claim_slot(key: str, limit: int = 4096) -> int:
    """The lowest worker slot no other live process of this sweep holds; held until this process ends.

    Locks, not job numbers: joblib reuses its workers, and a worker's GPU is fixed by its first job
    that starts CUDA, so each worker needs its own slot for as long as it lives. A worker that dies
    releases its slot with its lock.
    """
    import fcntl

    global _slot_lock
    folder = slot_folder(key)
    os.makedirs(folder, exist_ok=True)
    for slot in range(limit):
        f = open(os.path.join(folder, f"{slot}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _slot_lock = f
        return slot
    raise RuntimeError(f"no free worker slot in {folder}")


def pin_gpu(slot: int, gpus: Sequence[str]) -> Optional[str]:
    """Restrict this process to GPU `slot` modulo the count, if CUDA has not started in it yet.

    CUDA reads CUDA_VISIBLE_DEVICES once, when it starts: later changes are ignored, so this must
    run in the worker before its first CUDA call (Hydra's on_job_start is the earliest hook there).
    """
    import torch

    if not gpus or torch.cuda.is_initialized():
        return None
    gpu = gpus[slot % len(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def _is_joblib(config: DictConfig) -> bool:
    return "joblib" in str(OmegaConf.select(config, "hydra.launcher._target_", default="")).lower()


def _release_gpu_memory() -> Optional[float]:
    """Free the cached GPU memory a job leaves behind; returns its peak use in MiB (None without CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return peak


class SweepCallback(Callback):
    """Hydra callback (see `hydra.callbacks` in conf/config.yaml).

    gallery: write `contact_sheet.png` and `index.html` into the sweep folder when a sweep ends.
    webm: also give each video a WebM (VP9) copy, for browsers that cannot play H.264.
    one_gpu_per_worker: under the joblib launcher with several GPUs, give each worker its own GPU.
    """

    def __init__(self, gallery: bool = True, webm: bool = False, one_gpu_per_worker: bool = True) -> None:
        self.gallery, self.webm, self.one_gpu_per_worker = gallery, webm, one_gpu_per_worker
        self._set_gpus = False
        self._started: Optional[float] = None

    # -- in the launching process ---------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.time()
        _failed.clear()
        _sweep_failed.clear()
        if self.one_gpu_per_worker and _is_joblib(config) and GPUS_ENV not in os.environ:
            # Counted here, once: the workers inherit the list and never need CUDA to count.
            os.environ[GPUS_ENV] = ",".join(_visible_gpus())
            self._set_gpus = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import gallery

        sweep_dir = os.path.abspath(str(config.hydra.sweep.dir))
        if self._set_gpus:
            os.environ.pop(GPUS_ENV, None)
            self._set_gpus = False
        shutil.rmtree(slot_folder(sweep_dir), ignore_errors=True)
        # Jobs of this sweep only: a sweep run again into the same folder (a fixed hydra.sweep.dir) leaves
        # the earlier one's folders. A few seconds of slack for a cluster's clocks.
        found = gallery.collect_jobs(sweep_dir)
        since = -float("inf") if self._started is None else self._started - CLOCK_SLACK
        jobs = [j for j in found if j.started >= since]
        earlier = len(found) - len(jobs)
        if earlier:
            print(f"dreamvid: note: {earlier} job folder(s) of an earlier sweep in {sweep_dir} are left out",
                  file=sys.stderr, flush=True)
        if self.gallery and jobs:
            try:
                made = gallery.write_gallery(sweep_dir, webm=self.webm, jobs=jobs)
                print(f"dreamvid: sweep gallery: {made['html']}", flush=True)
            except Exception as e:  # noqa: BLE001 - the videos are made; a broken gallery must not hide them
                print(f"dreamvid: warning: could not make the sweep gallery in {sweep_dir}: {e}",
                      file=sys.stderr, flush=True)
        bad = [f"job {j.num} ({' '.join(j.overrides)})" for j in jobs if j.status != "ok"]
        _sweep_failed[:] = bad
        if bad:
            print(f"dreamvid: error: {len(bad)} of {len(jobs)} sweep jobs failed: {'; '.join(bad)}",
                  file=sys.stderr, flush=True)

    # -- in the process that runs the job -------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _job.update(started=time.time(), error=None)
        # Python shows a warning once per place in a process: re-adding the filter (it replaces itself)
        # resets that memory, so each job of a sweep shows its own warnings, like a run of its own.
        warnings.filterwarnings("default", category=UserWarning)
        if OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN:  # an earlier sweep's outcome, same folder
            for name in (STATUS_FILE, ERROR_FILE):
                stale = os.path.join(str(config.hydra.runtime.output_dir), name)
                if os.path.exists(stale):
                    os.remove(stale)
        gpus = [g for g in os.environ.get(GPUS_ENV, "").split(",") if g]
        # Only joblib's workers share a machine's GPUs; SLURM, submitit and Ray give each job its own.
        if self.one_gpu_per_worker and _is_joblib(config) and len(gpus) > 1 and _slot_lock is None:
            global _pinned
            _pinned = pin_gpu(claim_slot(os.path.abspath(str(config.hydra.sweep.dir))), gpus)
        _release_gpu_memory()  # start the peak count afresh

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        peak = _release_gpu_memory()
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        output, error = None, _job["error"]
        if job_return.status == JobStatus.COMPLETED:
            output = job_return._return_value if isinstance(job_return._return_value, str) else None
        else:
            error = error or f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        status = {
            "num": int(config.hydra.job.num),
            "overrides": list(job_return.overrides or []),
            "status": "failed" if error or output is None else "ok",
            "output": output,
            "error": error,
            "seconds": round(time.time() - _job["started"], 3),
            "peak_gpu_mib": None if peak is None else round(peak, 1),
            "gpu": _pinned or (os.environ.get("CUDA_VISIBLE_DEVICES") if peak is not None else None),
        }
        folder = str(config.hydra.runtime.output_dir)
        tmp = os.path.join(folder, STATUS_FILE + ".partial")
        with open(tmp, "w") as f:
            json.dump(status, f, indent=1)
        os.replace(tmp, os.path.join(folder, STATUS_FILE))
