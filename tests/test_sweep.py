"""Sweeps through the real command line and Hydra's launchers, at tiny sizes."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import cv2
import pytest
from omegaconf import OmegaConf

from conftest import read_video, run_cli
from test_gallery import assert_all_play, browser_check

from dreamvid import cli, model, sweep
from dreamvid.cli import callbacks
from dreamvid.gallery import main as gallery_main, sheet_layout

TINY = ["debug=tiny"]


def job_dirs(cwd) -> list:
    """The job folders of the one sweep under cwd, in job order: multirun/DATE/TIME/N."""
    sweeps = glob.glob(os.path.join(str(cwd), "multirun", "*", "*"))
    assert len(sweeps) == 1, sweeps
    return sorted(glob.glob(os.path.join(sweeps[0], "[0-9]*")), key=lambda d: int(os.path.basename(d)))


def status(job: str) -> dict:
    with open(os.path.join(job, "job.json")) as f:
        return json.load(f)


def test_two_by_two_sweep_makes_four_runs_a_contact_sheet_and_a_gallery(tmp_path):
    r = run_cli(["-m", *TINY, "frames=2", "dream.layers=[blocks.10],[blocks.4]", "seed=1,2"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    jobs = job_dirs(tmp_path)
    assert [os.path.basename(j) for j in jobs] == ["0", "1", "2", "3"]
    combos = set()
    for job in jobs:
        meta, frames = read_video(os.path.join(job, "dream.mp4"))  # the default output, in the job's folder
        assert len(frames) == 2 and meta["size"] == (64, 48)
        cfg = OmegaConf.load(os.path.join(job, ".hydra", "config.yaml"))
        assert cfg.frames == 2 and cfg.width == 64
        combos.add((tuple(cfg.dream.layers), cfg.seed))
        assert status(job)["status"] == "ok" and status(job)["output"] == os.path.join(job, "dream.mp4")
        assert os.path.exists(os.path.join(job, "dream.mp4.yaml"))
    assert combos == {(("blocks.10",), 1), (("blocks.10",), 2), (("blocks.4",), 1), (("blocks.4",), 2)}

    top = os.path.dirname(jobs[0])
    sheet = cv2.imread(os.path.join(top, "contact_sheet.png"))[..., ::-1]
    # 4 jobs: 2 x 2 cells; 64x48 frames at the default 256 px width: 192 px high; a label of
    # 3 lines (job number, dream.layers, seed) of 18 px + 4; 8 px around and between the cells.
    assert sheet.shape == (2 * (192 + 58) + 3 * 8, 2 * 256 + 3 * 8, 3)
    lay = sheet_layout(4, 48 / 64, lines=3)
    assert (lay.height, lay.width) == sheet.shape[:2]
    labels = []
    for i in range(4):
        x, y, w, h = lay.thumb_box(i)
        assert sheet[y:y + h, x:x + w].std() > 5  # a dreamed frame, not an empty cell
        x, y, w, h = lay.label_box(i)
        text = sheet[y:y + h, x:x + w].max(axis=2) > 150
        assert text.sum() > 100 and text[h * 2 // 3:].sum() > 20, i  # every line has text, the last too
        labels.append(text)
    assert len({t.tobytes() for t in labels}) == 4  # each label names a different combination

    page = open(os.path.join(top, "index.html"), encoding="utf-8").read()
    assert page.count("<video controls loop muted playsinline>") == 4
    assert "varying: dream.layers, seed" in page and "debug=tiny frames=2" in page
    # the gallery can be remade from the folder alone, here with WebM copies as well
    os.remove(os.path.join(top, "index.html"))
    assert gallery_main([top, "--webm"]) == 0
    report = browser_check(top, str(tmp_path / "sweep.png"))
    assert_all_play(report, n_videos=4)
    assert len(report["sources"]) == 8


def _in_process_sweep(monkeypatch, tmp_path, *overrides):
    """Run `dreamvid -m ...` in this process (Hydra's basic launcher); returns the exit status."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dreamvid", "-m", *TINY, *overrides])
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        cli.main()
    except SystemExit as e:
        return e.code
    finally:
        GlobalHydra.instance().clear()
    return 0


def test_an_in_process_sweep_loads_the_model_once(monkeypatch, tmp_path):
    built = []
    real = model._build_lite
    monkeypatch.setattr(model, "_build_lite", lambda name, w: built.append((name, w)) or real(name, w))
    model.load_backbone.cache_clear()
    try:
        assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "seed=1,2") == 0
    finally:
        model.load_backbone.cache_clear()
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 2 and all(status(j)["status"] == "ok" for j in jobs)
    assert [b for b in built if b[1] != model.RANDOM] == [("lite0", None)]


def test_a_failed_job_is_reported_and_the_sweep_goes_on(monkeypatch, tmp_path, capsys):
    assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "dream.octaves=0,2") == 1
    err = capsys.readouterr().err
    assert "dreamvid: error: job 0 (debug=tiny frames=1 dream.octaves=0): dream.octaves=0 must be at least 1" in err
    assert "1 of 2 sweep jobs failed" in err and "Traceback" not in err
    bad, good = job_dirs(tmp_path)
    assert status(bad)["status"] == "failed" and "at least 1" in status(bad)["error"]
    assert open(os.path.join(bad, "error.txt")).read().startswith("dream.octaves=0 must be at least 1")
    assert status(good)["status"] == "ok" and read_video(os.path.join(good, "dream.mp4"))[1]
    page = open(os.path.join(os.path.dirname(bad), "index.html"), encoding="utf-8").read()
    assert 'class="job failed" id="job-0"' in page and page.count("<video ") == 1
    assert os.path.exists(os.path.join(os.path.dirname(bad), "contact_sheet.png"))


def test_a_sweep_run_again_into_its_folder_shows_only_its_own_jobs(monkeypatch, tmp_path, capsys):
    fixed = "hydra.sweep.dir=multirun/day/same"
    assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "dream.octaves=0,1,1", fixed) == 1  # job 0 fails
    for job in job_dirs(tmp_path):  # the earlier sweep, a minute ago
        past = os.path.getmtime(os.path.join(job, ".hydra", "overrides.yaml")) - 60
        os.utime(os.path.join(job, ".hydra", "overrides.yaml"), (past, past))
    capsys.readouterr()
    assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "seed=4,5", "dream.octaves=1", "overwrite=true",
                             fixed) == 0
    err = capsys.readouterr().err
    assert "1 job folder(s) of an earlier sweep" in err and "failed" not in err
    page = open(tmp_path / "multirun" / "day" / "same" / "index.html", encoding="utf-8").read()
    assert "2 jobs, 2 ok" in page and page.count("<video ") == 2


def test_an_unexpected_crash_in_one_job_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    from dreamvid import pipeline

    real = pipeline.run

    def flaky(cfg, typed=(), context=None):
        if cfg.seed == 1:
            raise RuntimeError("CUDA out of memory (pretend)")
        return real(cfg, typed, context)

    monkeypatch.setattr(pipeline, "run", flaky)
    assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "seed=1,2") == 1
    err = capsys.readouterr().err
    assert "job 0 (debug=tiny frames=1 seed=1): RuntimeError: CUDA out of memory (pretend) (traceback in" in err
    bad, good = job_dirs(tmp_path)
    assert "Traceback" in open(os.path.join(bad, "error.txt")).read()
    assert status(good)["status"] == "ok"


@pytest.mark.parametrize("launcher,plugin", [
    (["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], "hydra_joblib_launcher"),  # our joblib preset
    (["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"], "hydra_submitit_launcher"),  # as SLURM
], ids=["joblib", "submitit_local"])
def test_launchers_run_a_small_sweep(tmp_path, launcher, plugin):
    pytest.importorskip("hydra_plugins." + plugin)
    # One torch thread per job: the two jobs run side by side. Two pretend GPUs, which only joblib's
    # workers share out among themselves (nothing here uses CUDA: device=cpu).
    env = {"OMP_NUM_THREADS": "1", sweep.GPUS_ENV: "7,8"}
    r = run_cli(["-m", *launcher, *TINY, "device=cpu", "frames=1", "seed=1,2"], cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 2
    for job in jobs:
        assert status(job)["status"] == "ok"
        assert len(read_video(os.path.join(job, "dream.mp4"))[1]) == 1
    assert os.path.exists(os.path.join(os.path.dirname(jobs[0]), "index.html"))
    gpus = {status(job)["gpu"] for job in jobs}
    if plugin == "hydra_joblib_launcher":
        assert gpus and gpus <= {"7", "8"}, gpus  # a worker that ran both jobs kept its one GPU
        assert not os.path.exists(sweep.slot_folder(os.path.dirname(jobs[0])))  # tidied at the end
    else:
        assert gpus == {None}


def test_the_parallel_preset_runs_one_worker_per_gpu():
    cfg = OmegaConf.load(os.path.join(os.path.dirname(sweep.__file__), "conf", "hydra", "launcher", "parallel.yaml"))
    assert cfg.n_jobs == max(1, sweep.gpu_count()) and cfg.backend == "loky"


def test_each_worker_claims_its_own_gpu_slot(tmp_path, monkeypatch):
    key = str(tmp_path)
    monkeypatch.setattr(sweep, "slot_lock", None)
    assert sweep.claim_slot(key) == 0
    held = sweep.slot_lock
    try:
        # another live worker of the same sweep gets the next slot; a different sweep starts at 0
        code = "import sys; from dreamvid.sweep import claim_slot; print(claim_slot(sys.argv[1]))"
        other = subprocess.run([sys.executable, "-c", code, key], capture_output=True, text=True)
        assert other.stdout.strip() == "1", other.stderr
        other = subprocess.run([sys.executable, "-c", code, key + "x"], capture_output=True, text=True)
        assert other.stdout.strip() == "0", other.stderr
    finally:
        held.close()
        for k in (key, key + "x"):
            shutil.rmtree(sweep.slot_folder(k), ignore_errors=True)


def test_pinning_picks_the_slot_modulo_the_gpus_before_cuda_starts(monkeypatch):
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert sweep.pin_gpu(3, ["4", "5"]) == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert sweep.pin_gpu(0, []) is None
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # too late: CUDA ignores the change
    assert sweep.pin_gpu(0, ["4", "5"]) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_callback_pins_a_joblib_worker_once(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(sweep, "slot_lock", None)
    monkeypatch.setenv(sweep.GPUS_ENV, "2,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": joblib}}})
    slurm = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": "x.SlurmLauncher"}}})
    callbacks.SweepCallback().on_job_start(slurm)  # SLURM gives each job its own GPU already
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3" and sweep.slot_lock is None
    cb = callbacks.SweepCallback()
    cb.on_job_start(config)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"  # slot 0
    os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"
    cb.on_job_start(config)  # the same worker's next job keeps its slot and does not pin again
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    sweep.slot_lock.close()
    shutil.rmtree(sweep.slot_folder(str(tmp_path)))
    callbacks.SweepCallback(one_gpu_per_worker=False).on_job_start(config)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_memory_is_released_between_jobs(monkeypatch, tmp_path):
    import torch

    x = torch.empty(64 * 2**20, device="cuda")  # 256 MiB
    del x
    assert torch.cuda.memory_reserved() >= 256 * 2**20
    peak = sweep.release_gpu_memory()
    assert peak >= 256 and torch.cuda.memory_reserved() < 256 * 2**20
    assert torch.cuda.max_memory_allocated() < 256 * 2**20


def test_each_job_of_a_sweep_shows_its_own_warnings(tmp_path):
    import warnings

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": "x.Basic"}}})
    cb = callbacks.SweepCallback(one_gpu_per_worker=False)

    def capped():  # one place in the code, as dream.octave_sizes warns from one line
        warnings.warn("dream.octaves=5 would shrink 96x64 below 32 px; using 2 octaves", UserWarning)

    with warnings.catch_warnings(record=True) as shown:
        warnings.filterwarnings("default", category=UserWarning)
        cb.on_job_start(config)
        capped()
        capped()  # the same job: once
        cb.on_job_start(config)
        capped()  # the next job: again
    assert len(shown) == 2
    assert sum(f[0] == "default" and f[2] is UserWarning for f in warnings.filters) <= 1  # no pile of filters


def test_the_gallery_labels_a_job_with_the_octaves_that_ran(monkeypatch, tmp_path):
    from dreamvid.gallery import collect_jobs, varying

    # 64x48 holds two octaves of 1.4 above the model's 32 px: dream.octaves=4 runs 2
    assert _in_process_sweep(monkeypatch, tmp_path, "frames=1", "dream.octaves=2,4") in (0, None)
    jobs = job_dirs(tmp_path)
    assert status(jobs[0])["ran"] == {} and status(jobs[1])["ran"] == {"dream.octaves": [2]}
    found = collect_jobs(os.path.dirname(jobs[0]))
    varying(found)
    assert [j.values["dream.octaves"] for j in found] == ["2", "4 (ran 2)"]
    page = open(os.path.join(os.path.dirname(jobs[0]), "index.html")).read()
    assert "4 (ran 2)" in page
