"""The Hydra callback of sweeps (see `hydra.callbacks` in conf/config.yaml): Hydra's side of `dreamvid.sweep`."""
from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .. import sweep
from ..sweep import CLOCK_SLACK, ERROR_FILE, GPUS_ENV, STATUS_FILE

OmegaConf.register_new_resolver("dreamvid.gpus", lambda: max(1, sweep.gpu_count()), replace=True)


def describe_job() -> str:
    try:
        hc = HydraConfig.get()
    except ValueError:
        return "job"
    return f"job {hc.job.num} ({' '.join(hc.overrides.task)})"


def job_failed(error: BaseException, verbose: bool = False) -> None:
    """`sweep.job_failed` for the job Hydra is running."""
    sweep.job_failed(error, describe_job(), HydraConfig.get().runtime.output_dir, verbose=verbose)


def _is_joblib(config: DictConfig) -> bool:
    return "joblib" in str(OmegaConf.select(config, "hydra.launcher._target_", default="")).lower()



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
        sweep.failed_here.clear()
        sweep.failed_in_sweep.clear()
        if self.one_gpu_per_worker and _is_joblib(config) and GPUS_ENV not in os.environ:
            # Counted here, once: the workers inherit the list and never need CUDA to count.
            os.environ[GPUS_ENV] = ",".join(sweep.visible_gpus())
            self._set_gpus = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .. import gallery

        sweep_dir = os.path.abspath(str(config.hydra.sweep.dir))
        if self._set_gpus:
            os.environ.pop(GPUS_ENV, None)
            self._set_gpus = False
        shutil.rmtree(sweep.slot_folder(sweep_dir), ignore_errors=True)
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
        sweep.failed_in_sweep[:] = bad
        if bad:
            print(f"dreamvid: error: {len(bad)} of {len(jobs)} sweep jobs failed: {'; '.join(bad)}",
                  file=sys.stderr, flush=True)

    # -- in the process that runs the job -------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.current_job.update(started=time.time(), error=None, ran={})
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
        if self.one_gpu_per_worker and _is_joblib(config) and len(gpus) > 1 and sweep.slot_lock is None:
            sweep.pinned_gpu = sweep.pin_gpu(sweep.claim_slot(os.path.abspath(str(config.hydra.sweep.dir))), gpus)
        sweep.release_gpu_memory()  # start the peak count afresh

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        peak = sweep.release_gpu_memory()
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        output, error = None, sweep.current_job["error"]
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
            "seconds": round(time.time() - sweep.current_job["started"], 3),
            "peak_gpu_mib": None if peak is None else round(peak, 1),
            "gpu": sweep.pinned_gpu or (os.environ.get("CUDA_VISIBLE_DEVICES") if peak is not None else None),
            "ran": dict(sweep.current_job.get("ran") or {}),  # settings that ran otherwise than given
        }
        folder = str(config.hydra.runtime.output_dir)
        sweep.write_status(folder, status)
