"""Sweeps and segments=auto on a real local Ray cluster (ray from PyPI, with Hydra's Ray launcher), which
the test starts and stops."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

from conftest import run_cli
from dreamvid.video import ffmpeg_exe, probe

RAY = ["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_gpus=0", "hydra.launcher.ray.remote.num_cpus=1"]


def _ray_command():
    return shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")


@pytest.fixture(scope="module")
def cluster():
    try:
        import ray  # noqa: F401
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    except ImportError as e:
        reason = f"Ray (with hydra-ray-launcher) is not installed for Python {sys.version.split()[0]}: {e}"
        print(reason)
        pytest.skip(reason)
    ray_cli = _ray_command()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    running = subprocess.run([ray_cli, "status"], capture_output=True, env=env, timeout=60).returncode == 0
    if not running:  # a cluster of our own, stopped at the end; one that was running is left as it is
        subprocess.run([ray_cli, "start", "--head", "--num-cpus=2", "--object-store-memory=100000000",
                        "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True,
                       env=env, timeout=180)
    try:
        yield
    finally:
        if not running:
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_a_two_job_sweep_runs_on_ray_and_gets_its_gallery(cluster, tmp_path):
    r = run_cli(["-m", *RAY, "debug=tiny", "frames=1", "seed=1,2"], cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (sweep,) = glob.glob(str(tmp_path / "multirun" / "*" / "*"))
    for job in ("0", "1"):
        assert os.path.isfile(os.path.join(sweep, job, "dream.mp4")), os.listdir(sweep)
    assert os.path.isfile(os.path.join(sweep, "index.html")) and os.path.isfile(os.path.join(sweep, "contact_sheet.png"))


def test_segments_auto_dreams_its_segments_as_ray_tasks_and_joins_them(cluster, tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=12", "-frames:v", "12",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    out = tmp_path / "dream.mp4"
    r = run_cli(["mode=video", f"input={clip}", f"output={out}", "segments=auto", "segment_frames=6",
                 "segment_overlap=0", "debug=tiny", *RAY], cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 segments, dreaming 2 of them as jobs" in r.stdout
    assert probe(str(out)).frames == 12 and not os.path.exists(str(out) + ".segments")
