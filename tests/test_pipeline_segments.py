"""segments=auto through the real command line: a two-scene clip dreamed as segment jobs and joined."""
import os

import pytest

from conftest import run_cli
from dreamvid import segments as S
from dreamvid.video import probe
from test_clip import panning, write_clip

ARGS = ["mode=video", "debug=tiny", "width=null", "height=null", "dream.octaves=1", "dream.iterations=2",
        "coherence.octaves=1", "coherence.iterations=2", "segments=auto", "segment_frames=6",
        "segment_overlap=2", "device=cpu"]


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    frames = panning(n=10, w=48, h=32, seed=0) + panning(n=10, w=48, h=32, seed=1)
    return write_clip(tmp_path_factory.mktemp("src") / "scenes.mp4", frames)


def test_segmented_clip_keeps_count_rate_duration_and_audio_through_a_launcher(two_scenes, tmp_path):
    out = tmp_path / "out.mp4"
    launcher = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]  # the joblib preset, two workers
    r = run_cli(ARGS + launcher + [f"input={two_scenes}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"],
                cwd=str(tmp_path), env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 segments, dreaming 4 of them as jobs" in r.stdout  # cut at 10, each scene in two chunks
    src, dst = probe(two_scenes), probe(str(out))
    assert (dst.frames, dst.fps, dst.size) == (20, "30000/1001", (48, 32))
    assert dst.duration == pytest.approx(src.duration)
    assert dst.has_audio and dst.audio_duration == pytest.approx(src.audio_duration, abs=0.03)
    assert not os.path.exists(S.folder(str(out)))  # the segments' folder is gone once joined
    assert os.path.exists(str(out) + ".yaml")


def test_a_rerun_dreams_only_the_missing_segments(two_scenes, tmp_path):
    out = tmp_path / "out.mp4"
    args = ARGS + [f"input={two_scenes}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    # a segment job that fails (its checkpoint folder cannot be made) leaves the others finished
    S.claim(str(out))  # dreamvid's own segments' folder, as the run makes it
    blocker = S.segment_path(str(out), 2) + ".state"
    open(blocker, "w").close()
    r = run_cli(args, cwd=str(tmp_path), env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "segments 2 of 4 did not finish" in r.stderr, r.stderr[-2000:]
    assert not out.exists()
    assert [os.path.exists(S.segment_path(str(out), i)) for i in range(4)] == [True, True, False, True]
    os.remove(blocker)
    r = run_cli(args, cwd=str(tmp_path), env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 segments, dreaming 1 of them" in r.stdout
    assert probe(str(out)).frames == 20


def test_jobs_repeat_the_command_but_not_its_run_folder_output_or_segment():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dreamvid.cli.launch import job_overrides, quote

    task = ["mode=video", "input=a.mp4", "output=b.mp4", "segments=auto", "segment_frames=50", "segment=3"]
    hydra = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=4", "hydra.run.dir=x", "hydra.mode=RUN"]
    assert job_overrides(task, hydra) == ["mode=video", "input=a.mp4", "segments=auto", "segment_frames=50",
                                          "hydra/launcher=parallel", "hydra.launcher.n_jobs=4"]
    parser = OverridesParser.create()
    for path in ["/tmp/a b/c,d=e.mp4", "/tmp/it's.mp4"]:
        assert parser.parse_override("output=" + quote(path)).value() == path


def test_resume_of_a_segmented_render_says_to_run_the_same_command(tmp_path):
    out = tmp_path / "out.mp4"
    os.makedirs(S.folder(str(out)))
    r = run_cli(["progress=false", f"resume={out}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "run that same command again" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stop_stops_the_jobs_keeps_finished_segments_and_the_same_command_finishes(two_scenes, tmp_path, stop):
    import signal

    from conftest import start_cli, wait_for_frames

    out = tmp_path / "out.mp4"
    args = ARGS + [f"input={two_scenes}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = start_cli(args, str(tmp_path), env={"OMP_NUM_THREADS": "1"})
    wait_for_frames(S.segment_path(str(out), 1) + ".state", 1, proc, timeout=180)
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's process group: the parent, which passes it on
    else:
        proc.send_signal(signal.SIGTERM)  # `kill` or a cluster: the parent alone, which passes it to the jobs
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == (130 if stop == "ctrl-c" else 143), stderr[-2000:]
    assert "finished segments are kept" in stderr and "Traceback" not in stderr
    assert os.path.exists(S.segment_path(str(out), 0)) and not out.exists()
    r = run_cli(args, cwd=str(tmp_path), env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dreaming 3 of them" in r.stdout and probe(str(out)).frames == 20


def test_a_truncated_clip_is_planned_to_its_last_good_frame_and_said_so(tmp_path):
    from conftest import make_config

    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline import run

    src = write_clip(tmp_path / "long.mp4", panning(n=30, w=48, h=32, speed=0.5))
    data = open(src, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out.mp4"
    cfg = make_config(*ARGS, "flow=none", f"input={cut}", f"output={out}")  # no Hydra: segments dreamed here
    with pytest.raises(DreamvidError, match=r"decoding stopped after frame (\d+) of 30.*frames dreamed are in") as e:
        run(cfg)
    kept = probe(str(out)).frames
    assert 0 < kept < 30 and f"the {kept} frames dreamed" in str(e.value)


def test_a_second_render_of_the_same_output_is_refused_while_one_runs(two_scenes, tmp_path):
    """A segmented render claims its output like a plain one: the same command started twice would
    launch the same jobs and join into the same file."""
    from dreamvid.checkpoint import Checkpoint

    out = tmp_path / "out.mp4"
    running = Checkpoint(str(out), key="")  # what the first render holds
    running.lock()
    try:
        r = run_cli(ARGS + [f"input={two_scenes}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"],
                    cwd=str(tmp_path))
    finally:
        running.unlock()
    assert r.returncode == 2 and "is being rendered by another dreamvid" in r.stderr, r.stderr[-2000:]
    assert not os.path.exists(S.folder(str(out)))  # refused before planning anything


@pytest.mark.parametrize("launcher,elsewhere", [("basic", False), ("parallel", False), ("slurm", True)])
def test_jobs_on_a_clusters_nodes_are_not_judged_by_this_machines_device(launcher, elsewhere):
    """A login node without a GPU must not warn that the segments will be slow on its CPU."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    from dreamvid.cli.launch import context
    from dreamvid.pipeline import Context

    if launcher != "basic":
        pytest.importorskip({"parallel": "hydra_plugins.hydra_joblib_launcher",
                             "slurm": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    assert not Context().elsewhere  # no command line: jobs run in this process
    with initialize_config_module("dreamvid.conf", version_base=None):
        cfg = compose("config", [f"hydra/launcher={launcher}", "hydra.runtime.output_dir=/tmp"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert context().elsewhere == elsewhere
    finally:
        HydraConfig.instance().cfg = None


def test_a_folder_of_the_users_named_like_the_segments_folder_is_refused_and_kept(two_scenes, tmp_path):
    out = tmp_path / "out.mp4"
    mine = tmp_path / "out.mp4.segments"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    r = run_cli(ARGS + [f"input={two_scenes}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"],
                cwd=str(tmp_path))
    assert r.returncode == 2 and "out.mp4.segments is not a folder dreamvid made (it holds notes.txt)" in r.stderr
    assert os.listdir(mine) == ["notes.txt"] and not out.exists()
