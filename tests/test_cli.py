"""End to end through the real command line, at tiny sizes."""
import os
import subprocess
import sys

import pytest

from conftest import read_video, run_cli

TINY = ["debug=tiny"]


def test_tiny_zoom_run_makes_a_playable_mp4_with_its_config(tmp_path):
    out = tmp_path / "z.mp4"
    r = run_cli(TINY + ["frames=4", "fps=8", f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout
    meta, frames = read_video(str(out))
    assert len(frames) == 4 and meta["size"] == (64, 48) and meta["fps"] == 8
    assert meta["codec"] == "h264" and "yuv420p" in meta["pix_fmt"]
    assert (tmp_path / "z.mp4.yaml").read_text().count("frames: 4") == 1
    from dreamvid.video import probe_metadata

    assert '"frames":4' in probe_metadata(str(out))["comment"]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.state"))


def test_default_output_goes_to_the_run_folder(tmp_path):
    r = run_cli(TINY + ["frames=1"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    made = list(tmp_path.glob("outputs/*/*/dream.mp4"))
    assert len(made) == 1 and str(made[0]) in r.stdout
    assert f"output: {made[0]}" in open(str(made[0]) + ".yaml").read()  # the saved config says where it is


def test_layers_command_lists_channels(tmp_path):
    r = run_cli(["layers", "lite0"], cwd=str(tmp_path))
    assert r.returncode == 0 and "blocks.10" in r.stdout and "112" in r.stdout
    # piped into a reader that has gone (`dreamvid layers | head -1`): a quiet exit, no traceback
    proc = subprocess.Popen([sys.executable, "-m", "dreamvid", "layers", "lite0"], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in proc.stderr.read()


BAD = [
    (["input={missing}"], "input not found"),
    (["input={tmp}"], "(a folder of frames is a clip: mode=video dreams it)"),
    (["input={text}"], "cannot read"),
    (["input={tmp}/clip.MOV"], "clip.MOV is a video: mode=zoom starts from one picture; mode=video dreams a clip"),
    (["mode=video", "dream.guide={tmp}/g.webm"], "g.webm is a video: the guide is one picture"),
    (["frames=0"], "frames=0 must be between 1 and 1,000,000"),
    (["fps=-5"], "fps=-5 must be a positive number of frames per second, at most 1000"),
    (["fps=0"], "fps=0 must be a positive number"),
    (["width=0"], "width=0 must be between 1 and 16384 px"),
    (["width=40000", "height=30000"], "width=40000 must be between 1 and 16384 px (H.264's largest side)"),
    (["motion.zoom=0"], "motion.zoom=0 must be positive"),
    (["dream.iterations=-3"], "dream.iterations=-3 must be 0 or more"),
    (["model=nosuch"], "nosuch"),
    (["dream.layers=[blocks.99]"], "valid layers: stem"),
    (["dream.layers=[blocks.10]", "dream.channels=[[5000]]"], "out of range"),
    (["width=16", "height=16"], "smaller than the 32 px"),
    (["width=31", "height=64"], "width=31 is smaller than the 32 px"),  # before the odd-width warning
    (["output={tmp}/out.xyz"], "unsupported output extension"),
    (["output=/proc/forbidden/out.mp4"], "cannot create output folder"),
    (["mode=dance"], "mode=dance must be one of zoom, video, neuron"),
    (["device=tpu"], "device=tpu must be one of auto, cpu, cuda"),
    (["dram.octaves=2"], "unknown setting dram.octaves (did you mean dream.octaves?)"),
    (["frames=abc"], "frames=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    (["preset=foo"], "preset=foo is not one of the choices: bodies, dogs, eyes"),
    (["dream.layers=blocks.10"], "dream.layers is a list: write dream.layers=[blocks.10]"),
    (["frames=5", "output={tmp}/still.png"], "still.png is one picture, but frames is 5: set frames=1"),
    (["mode=video", "output={tmp}/still.jpg"], "mode=video dreams a clip into a video"),
    (["dream.guide={guide}", "output={guide}", "overwrite=true"], "output would overwrite the guide image"),
    (["fps=inf"], "fps=inf must be a positive number of frames per second"),
    (["fps=nan"], "fps=nan must be a positive number of frames per second"),
    (["fps=5000"], "fps=5000 must be a positive number of frames per second, at most 1000 (no screen shows more)"),
    (["frames=1000000000"], "frames=1000000000 must be between 1 and 1,000,000 (each frame is checkpointed"),
    # a schedule over a huge length: refused before a billion frames are evaluated
    (["frames=1000000000", "motion.angle='20*sin(2*pi*s/3)'"], "must be between 1 and 1,000,000"),
    (["dream.layers=[blocks.10"], "cannot read dream.layers=[blocks.10 (no viable alternative at input '[blocks.10'): "
                                  "a list is written [a,b]"),
    (["motion.angle='20*sin(s)"], "cannot read motion.angle='20*sin(s)"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[b[0][0].split("=")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_gets_one_clear_line_and_no_output(tmp_path, args, message):
    (tmp_path / "t.png").write_text("not an image")
    import imageio.v3 as iio
    import numpy as np

    iio.imwrite(tmp_path / "guide.png", np.full((48, 64, 3), 100, np.uint8))
    fmt = dict(missing=tmp_path / "nope.png", tmp=tmp_path, text=tmp_path / "t.png", guide=tmp_path / "guide.png")
    args = [a.format(**fmt) for a in args]
    out = tmp_path / "o.mp4"
    extra = [] if any(a.startswith("output=") for a in args) else [f"output={out}"]
    r = run_cli(TINY + args + extra, cwd=str(tmp_path))
    assert r.returncode == 2
    err = r.stderr.strip()
    assert message in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_overrides_dreamvid_knows_pass_the_early_check():
    from dreamvid.cli import override_error

    good = ["-m", "dream.octaves=3,4", "seed=1,2", "model=vgg16", "flow=dis_fast,farneback", "preset=null",
            "debug=tiny", "output=${hydra:runtime.output_dir}/f/", "dream.step='0:(1), 4:(2)'", "width=null",
            "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "+extra=1", "dream.layers=[blocks.10]",
            "speed.tile=-1", "motion.zoom=1.5", "preset=glob(*)", "--cfg", "job"]
    assert override_error(good) is None
    assert override_error(["--config-dir", "mine", "preset=myown"]) is None  # the user's own options
    assert "every job would write output=shared.mp4" in override_error(["-m", "seed=1,2", "output=shared.mp4"])
    assert override_error(["-m", "seed=1,2", "output=${hydra:runtime.output_dir}/a.mp4"]) is None
    assert override_error(["-m", "output='/x/out.mp4'", "segment=0,1"]) is None  # segments=auto's jobs
    assert override_error(["-m", "hydra/launcher=slurm", "output=one.mp4"]) is None  # one job, sent elsewhere
    assert override_error(["mode=neuron", "channels=5"]) is None and override_error(["channels=3-7"]) is None
    assert override_error(["-sc", "install=bash"]) is None
    assert override_error(["-cd", "mine", "-cn", "myconf", "mygroup=x", "model=mynet"]) is None


def test_only_a_render_without_an_output_gets_a_run_folder():
    from dreamvid.cli import NO_RUN_FOLDER, run_folder_overrides

    assert run_folder_overrides(["output=a.mp4", "seed=2"]) == ["output=a.mp4", *NO_RUN_FOLDER, "seed=2"]
    assert run_folder_overrides(["resume=a.mp4"]) == ["resume=a.mp4", *NO_RUN_FOLDER]
    # beside the override, so that a flag after the overrides still parses
    assert run_folder_overrides(["output=a.mp4", "--cfg", "job"]) == ["output=a.mp4", *NO_RUN_FOLDER, "--cfg", "job"]
    for argv in (["seed=2"],  # no output: the video goes into the run folder
                 ["output=null"],
                 ["-m", "seed=1,2", "output=${hydra:runtime.output_dir}/a.mp4"],  # sweeps keep their records
                 ["hydra.mode=MULTIRUN", "seed=1,2", "output=${hydra:runtime.output_dir}/a.mp4"],
                 ["output=a.mp4", "hydra.run.dir=mine"]):  # the user's own choice
        assert run_folder_overrides(argv) == argv


def test_a_launcher_whose_plugin_is_missing_says_what_to_install(monkeypatch):
    import importlib.util

    from dreamvid import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hydra_plugins.hydra_joblib_launcher" else real(name, *a))
    assert cli.override_error(["-m", "+hydra/launcher=parallel", "seed=1,2"]) is not None
    problem = cli.override_error(["-m", "hydra/launcher=parallel", "seed=1,2"])
    assert problem == ('hydra/launcher=parallel needs the hydra-joblib-launcher package: pip install '
                       'hydra-joblib-launcher (or, in the dreamvid folder, pip install ".[sweep]")')
    assert cli.override_error(["-m", "hydra/launcher=slurm", "seed=1,2"]) is None  # installed with the tests


def test_output_equal_to_input_is_refused(tmp_path):
    import numpy as np
    import imageio.v3 as iio

    img = tmp_path / "in.png"
    iio.imwrite(img, np.full((48, 64, 3), 128, np.uint8))
    before = img.read_bytes()
    r = run_cli(TINY + [f"input={img}", f"output={img}", "overwrite=true"], cwd=str(tmp_path))
    assert r.returncode == 2 and "overwrite the input" in r.stderr
    assert img.read_bytes() == before


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"mine")
    r = run_cli(TINY + [f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 2 and "overwrite=true" in r.stderr and out.read_bytes() == b"mine"
    r = run_cli(TINY + [f"output={out}", "overwrite=true", "frames=1"], cwd=str(tmp_path))
    assert r.returncode == 0 and read_video(str(out))[1]


def test_gif_and_png_outputs(tmp_path):
    r = run_cli(TINY + ["frames=2", f"output={tmp_path}/a.gif"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    r = run_cli(TINY + ["frames=2", f"output={tmp_path}/pngs/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "pngs")) == ["frame_000000.png", "frame_000001.png"]
    # a trailing slash makes a folder of frames whatever the name looks like
    r = run_cli(TINY + ["frames=2", f"output={tmp_path}/shots.png/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "shots.png")) == ["frame_000000.png", "frame_000001.png"]
    assert not list(tmp_path.glob("*.state"))


def test_a_still_output_is_the_zooms_first_frame(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    img = tmp_path / "in.png"
    iio.imwrite(img, np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    still = tmp_path / "still.png"
    # debug=tiny sets frames=3; unset, an image output dreams one frame
    r = run_cli(TINY + ["frames=null", f"input={img}", f"output={still}", "progress=true"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "4/4" in r.stderr and "step" in r.stderr and "frame" not in r.stderr  # its progress: 2 octaves x 2 steps
    r = run_cli(TINY + ["frames=2", f"input={img}", f"output={tmp_path}/zoom/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    got = iio.imread(still)
    assert got.shape == (48, 64, 3) and np.abs(got.astype(int) - iio.imread(img)).mean() > 1  # dreamed
    assert np.array_equal(got, iio.imread(tmp_path / "zoom" / "frame_000000.png"))
    assert "frames: 1\n" in (tmp_path / "still.png.yaml").read_text()
    # told where to write, a render leaves nothing else behind (no outputs/DATE/TIME/ run folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "still.png", "still.png.yaml", "zoom", "zoom.yaml"]


def test_a_full_disk_gets_a_clear_message_and_no_output(tmp_path):
    from conftest import tmpfs

    with tmpfs(tmp_path / "small", "size=160k") as disk:
        for name, extra in (("o.mp4", ["frames=40"]), ("frames/", ["frames=40"]),  # a folder: no libpng noise
                            ("still.png", ["frames=1", "width=640", "height=480"])):  # nothing left of a still
            out = disk / name
            r = run_cli(TINY + ["width=128", "height=96", "dream.iterations=1", f"output={out}"] + extra,
                        cwd=str(tmp_path))
            assert r.returncode == 2, r.stderr
            assert "disk is full" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert os.listdir(disk) == [], os.listdir(disk)


def test_help_shows_dreamvids_usage_and_every_setting(tmp_path):
    r = run_cli(["--help"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("dreamvid: DeepDream") and "input=photo.jpg output=dream.png" in r.stdout
    assert "coherence:" in r.stdout and "coherence.new_step=1" in r.stdout and "powered by Hydra" not in r.stdout
    assert "the cores nobody else uses" in r.stdout  # each setting's help line, from its declaration
    assert os.listdir(tmp_path) == []  # asking for help leaves nothing behind
    from dreamvid.cli import GROUPS, _group_options, docs_folder

    listed = {line.split(":")[0]: line.split(":", 1)[1].split("   (")[0] for line in
              r.stdout.split("== Groups (group=option) ==")[1].split("==")[0].strip().splitlines()}
    for group in GROUPS:
        assert sorted(o.strip() for o in listed[group].split(",")) == _group_options(group), group
    # the docs it names are there (installed from a wheel: inside the package; from a checkout: beside it)
    docs = r.stdout.split("Docs (Markdown): ")[1].split("/ ")[0]
    assert os.path.isfile(os.path.join(docs, "video.md")) and os.path.isfile(os.path.join(docs, "design.md"))
    assert docs_folder() and os.path.isfile(os.path.join(docs_folder(), "video.md"))
    version = run_cli(["--version"], cwd=str(tmp_path))
    assert version.returncode == 0 and version.stdout.strip() == "dreamvid 0.1.0"


def test_frames_typed_for_a_mode_without_a_length_is_warned_about_but_not_a_presets(tmp_path):
    typed = run_cli(TINY + ["mode=neuron", "channels=[0]", "frames=5", f"output={tmp_path / 'a'}/"], cwd=str(tmp_path))
    assert typed.returncode == 0, typed.stderr
    assert "frames=5 is a zoom's length and is ignored in mode=neuron" in typed.stderr
    preset = run_cli(TINY + ["mode=neuron", "channels=[0]", f"output={tmp_path / 'b'}/"], cwd=str(tmp_path))
    assert preset.returncode == 0 and "ignored" not in preset.stderr, preset.stderr  # debug=tiny's frames: 3


def test_a_folder_of_frames_is_a_clip_and_segment_jobs_do_not_repeat_its_warning(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    (tmp_path / "shots").mkdir()
    for i in range(4):
        iio.imwrite(tmp_path / "shots" / f"s{i}.png", np.full((48, 64, 3), 60 * i, np.uint8))
    out = tmp_path / "d.mp4"
    r = run_cli(TINY + ["mode=video", "input=shots", "segments=auto", "segment_frames=2", "segment_overlap=0",
                        f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("a folder of frames has no frame rate of its own: it plays at fps=12") == 1, r.stderr
    meta, frames = read_video(str(out))
    assert len(frames) == 4 and meta["fps"] == 12


# Files of the user's at the paths a render writes beside its output: (made first, extra settings, exit status,
# what stderr says, the files that may change)
USERS_FILES = [
    ({"o.mp4.state/notes.txt": "months of work"}, [], 2,
     "o.mp4.state is not a folder dreamvid made (it holds notes.txt), and dreamvid keeps the checkpoint of o.mp4 "
     "under that name", ()),
    ({"o.mp4.state/notes.txt": "months of work"}, ["overwrite=true"], 0, "", ()),  # rendered beside, left there
    ({"o.mp4.state": "a file"}, ["overwrite=true"], 2, "o.mp4.state is a file, and dreamvid keeps", ()),
    ({"o.mp4.yaml": "my own notes"}, [], 2, "o.mp4.yaml exists and dreamvid did not write it", ()),
    ({"o.mp4.yaml": "my own notes"}, ["overwrite=true"], 0, "", ("o.mp4.yaml",)),
    ({"o.mp4.partial": "mine", "o.mp4.partial.log": "mine", "o.mp4.partial.mux": "mine"}, [], 0, "", ()),
    ({"o.mp4": "a video of mine"}, [], 2, "output exists: ", ()),
]


@pytest.mark.parametrize("made,extra,code,message,changed", USERS_FILES,
                         ids=[f"{next(iter(u[0]))}{'+overwrite' if u[1] else ''}" for u in USERS_FILES])
def test_what_the_user_keeps_beside_an_output_is_never_lost(tmp_path, made, extra, code, message, changed):
    for name, text in made.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    r = run_cli(TINY + ["frames=2", f"output={tmp_path / 'o.mp4'}"] + extra, cwd=str(tmp_path))
    assert r.returncode == code, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) <= 1, r.stderr
    for name, text in made.items():
        if name not in changed:
            assert (tmp_path / name).read_text() == text, name
    if code == 0:
        assert len(read_video(str(tmp_path / "o.mp4"))[1]) == 2
        assert (tmp_path / "o.mp4.yaml").read_text().startswith("# dreamvid settings of o.mp4")


def test_files_that_appear_while_a_render_runs_are_never_replaced(tmp_path):
    from conftest import start_cli, wait_for_frames

    out = tmp_path / "o.mp4"
    proc = start_cli(TINY + ["frames=8", "width=96", "height=64", "dream.iterations=4", f"output={out}"],
                     str(tmp_path))
    wait_for_frames(str(out) + ".state", 2, proc)
    made = {"o.mp4": "the user's video", "o.mp4.yaml": "the user's notes", "o.mp4-2.mp4": "another of theirs",
            "o.mp4.partial": "x", "o.mp4.partial.log": "x", "o.mp4.state/notes.txt": "put in the wrong folder"}
    for name, text in made.items():
        (tmp_path / name).write_text(text)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    kept = tmp_path / "o-2.mp4"
    assert f"{out} appeared while dreamvid rendered and is left as it is; the finished render is {kept}" in stderr
    for name, text in made.items():
        assert (tmp_path / name).read_text() == text, name
    assert len(read_video(str(kept))[1]) == 8 and (tmp_path / "o-2.mp4.yaml").read_text().count("frames: 8") == 1
    assert sorted(os.listdir(tmp_path / "o.mp4.state")) == ["notes.txt"]  # dreamvid's own files only are gone


def test_a_folder_that_appears_at_a_png_folder_output_is_left_and_the_frames_kept_beside(tmp_path):
    from conftest import start_cli, wait_for_frames

    out = tmp_path / "frames"
    proc = start_cli(TINY + ["frames=6", "width=96", "height=64", "dream.iterations=4", f"output={out}/"],
                     str(tmp_path))
    wait_for_frames(str(out) + ".state", 2, proc)
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "the finished render is " + str(tmp_path / "frames-2") in stderr, stderr
    assert "Traceback" not in stderr and os.listdir(out) == ["mine.txt"]
    assert len(os.listdir(tmp_path / "frames-2")) == 6


def test_a_render_without_output_in_a_folder_it_cannot_write_says_so(tmp_path):
    from conftest import tmpfs
    from dreamvid.cli import run_folder_problem

    assert run_folder_problem([], str(tmp_path)) is None
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        r = run_cli(TINY + ["frames=1"], cwd=str(ro))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"the current folder {ro} is not writable" in r.stderr and "pass output=PATH" in r.stderr
        r = run_cli(TINY + ["-m", "seed=1,2"], cwd=str(ro))
        assert r.returncode == 2 and "pass hydra.sweep.dir=PATH" in r.stderr, r.stderr
        assert run_folder_problem(["output=/elsewhere/a.mp4"], str(ro)) is None
        assert run_folder_problem(["--help"], str(ro)) is None


def test_resuming_a_folder_of_frames_repeats_no_warning_about_its_rate(tmp_path):
    import signal

    import imageio.v3 as iio
    import numpy as np

    from conftest import start_cli, wait_for_frames

    (tmp_path / "shots").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        iio.imwrite(tmp_path / "shots" / f"s{i}.png", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    out = tmp_path / "d.mp4"
    proc = start_cli(TINY + ["mode=video", "input=shots", "dream.iterations=4", f"output={out}"], str(tmp_path))
    wait_for_frames(str(out) + ".state", 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "no frame rate of its own" in stderr, stderr  # said once, by the render
    r = run_cli([f"resume={out}"], cwd=str(tmp_path))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r = run_cli([f"resume={out}"], cwd=str(tmp_path))
    assert r.returncode == 2 and f"{out} is complete: there is nothing to resume" in r.stderr, r.stderr


def test_a_preset_of_ones_own_in_the_working_folder_is_found(tmp_path):
    (tmp_path / "conf" / "preset").mkdir(parents=True)
    (tmp_path / "conf" / "preset" / "soft.yaml").write_text("# @package _global_\ndream:\n  step: 0.7\n"
                                                             "  layers: [blocks.4]\n")
    r = run_cli(TINY + ["preset=soft", "frames=1", f"output={tmp_path / 'a.png'}"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    saved = (tmp_path / "a.png.yaml").read_text()
    assert "step: 0.7" in saved and "- blocks.4" in saved
    r = run_cli(TINY + ["preset=nosuch"], cwd=str(tmp_path))
    assert r.returncode == 2 and "preset=nosuch is not one of the choices: bodies, dogs, eyes, soft" in r.stderr


def test_a_run_folder_keeps_the_warnings_and_how_the_render_ended(tmp_path):
    r = run_cli(TINY + ["frames=1", "coherence.step=0.2"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    (log,) = tmp_path.glob("outputs/*/*/dreamvid.log")
    text = log.read_text()
    assert "warning: coherence.step is ignored in mode=zoom" in text and "wrote " in text.splitlines()[-1]


def test_progress_written_to_a_file_is_a_few_lines_not_one_per_step(tmp_path):
    r = run_cli(TINY + ["mode=neuron", "channels=[0,1]", "neuron.steps=40", "progress=true",
                        f"output={tmp_path / 'n'}/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "neuron blocks" in ln]
    assert 1 <= len(lines) <= 3 and "40/40 steps (100%)" in lines[-1], r.stderr
