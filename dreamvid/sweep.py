"""Sweeps (`dreamvid -m ...`): what each job and the sweep as a whole keep track of, without Hydra.

Each job, in the process that runs it: one GPU per worker under the joblib launcher (a slot lock per
worker), GPU memory released when it ends, its outcome in `job.json` beside its video, its failure in
`error.txt`. The sweep, in the process that launched it: the list of failed jobs, which turns into the
command's exit status. The Hydra callback that calls these is the command line's (`dreamvid.cli.callbacks`).
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import tempfile
import traceback
from typing import Any, Dict, List, Optional, Sequence

STATUS_FILE = "job.json"  # a job's outcome, written when it ends


ERROR_FILE = "error.txt"  # why a job failed, written when it fails


GPUS_ENV = "DREAMVID_SWEEP_GPUS"  # the GPUs a sweep's workers share, set by the launching process


CLOCK_SLACK = 5.0  # seconds a job's files may seem older than the sweep's start (clocks of other machines)


# Module state, per process: the job running now, and the failures the exit status reports.
current_job = {"started": 0.0, "error": None}


failed_here: List[str] = []  # jobs that failed in this process (the basic launcher runs them all here)


failed_in_sweep: List[str] = []  # failed jobs of the last sweep, found by on_multirun_end


slot_lock: Any = None  # the open lock file that holds this worker's GPU slot for its lifetime


pinned_gpu: Optional[str] = None  # the GPU this worker was given



def gpu_count() -> int:
    """The number of GPUs, counted through NVML where possible so that CUDA itself is not started."""
    import torch

    return torch.cuda.device_count()



def failures() -> List[str]:
    """The jobs that failed in the last sweep (empty after a single run or a clean sweep)."""
    return list(dict.fromkeys(failed_here + failed_in_sweep))



def job_failed(error: BaseException, who: str, folder: str, verbose: bool = False) -> None:
    """Report a sweep job's failure in one line, keep the details in its folder, and carry on.

    A DreamvidError is the user's to fix and its message says how; anything else is unexpected and
    its traceback goes into the job's `error.txt` (and onto stderr when `verbose`).
    """
    from .errors import DreamvidError

    expected = isinstance(error, DreamvidError)
    message = str(error) if expected else f"{type(error).__name__}: {error}"
    detail = message if expected else "".join(traceback.format_exception(error))
    path = os.path.join(folder, ERROR_FILE)
    try:
        with open(path, "w") as f:
            f.write(detail if detail.endswith("\n") else detail + "\n")
    except OSError:
        path = ""
    current_job["error"] = message
    failed_here.append(who)
    where = "" if expected or not path else f" (traceback in {path})"
    print(f"dreamvid: error: {who}: {message.splitlines()[0] if message else type(error).__name__}{where}",
          file=sys.stderr, flush=True)
    if verbose and not expected:
        print(detail, file=sys.stderr, end="", flush=True)


def visible_gpus() -> List[str]:
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

    global slot_lock
    folder = slot_folder(key)
    os.makedirs(folder, exist_ok=True)
    for slot in range(limit):
        f = open(os.path.join(folder, f"{slot}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        slot_lock = f
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



def release_gpu_memory() -> Optional[float]:
    """Free the cached GPU memory a job leaves behind; returns its peak use in MiB (None without CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return peak



def ran(setting: str, value: Any) -> None:
    """A setting of the running job ran with another value than it was given (its size capped
    dream.octaves): kept for its job.json, and the gallery labels it with what ran."""
    values = current_job.setdefault("ran", {}).setdefault(setting, [])
    if value not in values:
        values.append(value)


def write_status(folder: str, status: Dict[str, Any]) -> None:
    """A job's outcome, `job.json` in its folder (written whole, then renamed)."""
    tmp = os.path.join(folder, STATUS_FILE + ".partial")
    with open(tmp, "w") as f:
        json.dump(status, f, indent=1)
    os.replace(tmp, os.path.join(folder, STATUS_FILE))
