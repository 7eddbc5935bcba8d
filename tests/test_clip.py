"""Video mode end to end on tiny synthetic clips: timing and audio kept, coherence, cuts, bad media."""
import os
import subprocess
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import make_config as compose_config

from dreamvid.metrics import coherence
from dreamvid.errors import DreamvidError
from dreamvid.coherence import carry_maturity, matured, touch_up_step
from dreamvid.pipeline.clip import new_state, output_size, restore_state, run_video, video_frames
from dreamvid.video import VideoMeta, ffmpeg_exe, probe, read_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# debug=tiny (from conftest), at the clip's own size, one octave of two iterations
TINY = ["mode=video", "width=null", "height=null", "dream.octaves=1", "dream.iterations=2",
        "coherence.octaves=1", "coherence.iterations=2", "overwrite=true"]


def make_config(*overrides: str):
    return compose_config(*TINY, *overrides)


def texture(h, w, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 1.0), (10, 0.6), (30, 0.4)):
        img += amp * cv2.resize(rng.random((cells, cells * w // h, 3)).astype(np.float32), (w, h),
                                interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min())
    return np.round(img * 255).astype(np.uint8)


def write_clip(path, frames, rate="30000/1001", audio=True, lossless=False):
    """Frames through ffmpeg into an H.264 mp4 (ffv1 when lossless or a side is odd) with a sine tone of the
    same length."""
    h, w = frames[0].shape[:2]
    seconds = float(len(frames) / Fraction(rate))
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", rate, "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", f"{seconds:.6f}",
                "-c:a", "aac"]
    pix = ["-c:v", "ffv1"] if w % 2 or h % 2 or lossless else ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
    cmd += pix + [str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        proc.stdin.write(np.ascontiguousarray(f).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return str(path)


def panning(n=8, w=64, h=48, speed=1.5, seed=0):
    """A textured scene panning left by a sub-pixel amount per frame."""
    import cv2

    big = texture(h, w + int(speed * n) + 4, seed)
    return [cv2.warpAffine(big, np.float32([[1, 0, speed * t], [0, 1, 0]]), (w, h),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) for t in range(n)]


STRONG = ["dream.step=6", "coherence.step=1"]  # a visible dream even with two iterations


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Frames this small dream fastest on one thread, which also does not thrash on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", panning())


@pytest.fixture(scope="module")
def dreamed(clip, tmp_path_factory):
    """The clip dreamed with the default coherent settings (flow=dis, warp=residual)."""
    return run_video(make_config(f"input={clip}", f"output={tmp_path_factory.mktemp('out') / 'dream.mp4'}", *STRONG))


def test_output_keeps_count_rate_duration_and_audio(clip, dreamed):
    out = dreamed
    src, dst = probe(clip), probe(out)
    assert (dst.width, dst.height, dst.fps, dst.frames) == (64, 48, "30000/1001", 8)
    assert dst.duration == pytest.approx(src.duration)
    assert dst.has_audio and dst.audio_codec == "aac"
    assert dst.audio_duration == pytest.approx(dst.duration, abs=0.03)
    assert os.path.exists(out + ".yaml")


def test_max_frames_trims_video_and_audio_with_frame_warp_and_colour_match(clip, tmp_path):
    out = run_video(make_config(f"input={clip}", f"output={tmp_path / 'five.mp4'}", "max_frames=5",
                                "coherence.warp=frame", "coherence.color_match=1.0"))
    meta = probe(out)
    assert meta.frames == 5
    assert meta.audio_duration == pytest.approx(5 * 1001 / 30000, abs=0.03)


def test_first_frame_starts_the_dream_and_its_sound_later_in_the_clip(tmp_path):
    frames = panning(n=12, speed=6)  # far apart: each frame is recognisably its own
    silent = write_clip(tmp_path / "silent.mp4", frames, rate="10", audio=False)
    src = str(tmp_path / "pan.mp4")  # silence for 0.5 s (frames 0-4), then a tone
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", silent, "-f", "lavfi", "-i",
                    "aevalsrc=if(gte(t\\,0.5)\\,0.5*sin(2*PI*440*t)\\,0):s=48000:d=1.2", "-c:v", "copy", "-c:a", "aac",
                    "-shortest", src], check=True)
    out = run_video(make_config(f"input={src}", f"output={tmp_path / 'part.mp4'}", "first_frame=5", "max_frames=4"))
    meta = probe(out)
    assert meta.frames == 4 and meta.audio_duration == pytest.approx(0.4, abs=0.03)
    pcm = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", out, "-t", "0.2", "-f", "s16le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout
    assert np.abs(np.frombuffer(pcm, np.int16)[2000:]).mean() > 3000  # the tone from the dream's first frame
    _, dreamed = read_frames(out)
    first = next(dreamed).astype(float)
    assert np.abs(first - frames[5]).mean() < 0.6 * np.abs(first - frames[0]).mean()
    rest = run_video(make_config(f"input={src}", f"output={tmp_path / 'rest.mp4'}", "first_frame=9"))
    assert probe(rest).frames == 3  # to the end of the clip
    with pytest.raises(DreamvidError, match=r"first_frame=12, but .* has 12 frames \(0 to 11\)"):
        run_video(make_config(f"input={src}", f"output={tmp_path / 'none.mp4'}", "first_frame=12"))


def test_coherent_dream_has_far_lower_warp_error_than_per_frame(clip, dreamed, tmp_path):
    per_frame = run_video(make_config(f"input={clip}", f"output={tmp_path / 'none.mp4'}", "flow=none", *STRONG))
    c, p = coherence(dreamed, clip), coherence(per_frame, clip)
    assert c["strength"] > 2.0  # it did dream
    assert c["warp_error"] < 0.5 * p["warp_error"]
    assert c["flicker"] < 0.3 * p["flicker"]


def test_a_folder_of_frames_is_dreamed_like_the_same_frames_in_a_video_file(tmp_path):
    import imageio.v3 as iio

    frames = panning(6)
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"shot{i}.png", f)
    out = run_video(make_config(f"input={folder}", f"output={tmp_path / 'f.mp4'}", "fps=10", *STRONG))
    meta = probe(out)
    assert (meta.frames, meta.rate, meta.size, meta.has_audio) == (6, 10, (64, 48), False)
    clip = write_clip(tmp_path / "same.mkv", frames, rate="10", audio=False, lossless=True)
    from_folder = run_video(make_config(f"input={folder}", f"output={tmp_path / 'a'}/", "fps=10", *STRONG))
    from_clip = run_video(make_config(f"input={clip}", f"output={tmp_path / 'b'}/", *STRONG))
    a, b = (sorted(os.listdir(d)) for d in (from_folder, from_clip))
    assert a == b and len(a) == 6
    for name in a:
        assert np.array_equal(iio.imread(os.path.join(from_folder, name)), iio.imread(os.path.join(from_clip, name)))


@pytest.mark.parametrize("name,size,rate,expected", [
    ("odd.mkv", "95x61", "30000/1001", (96, 62)),  # lossless ffv1, no audio: the mp4 is padded by a pixel
    ("opus.webm", "72x40", "24000/1001", (72, 40)),  # vp9 + opus: opus is re-encoded to aac for the mp4
])
def test_sizes_that_are_not_multiples_of_16_and_other_containers(tmp_path, name, size, rate, expected):
    w, h = (int(v) for v in size.split("x"))
    frames = panning(n=4, w=w, h=h)
    raw = write_clip(tmp_path / "raw.mkv", frames, rate=rate, audio=False) if name.endswith("mkv") else None
    if raw is None:  # a webm with opus audio
        src = str(tmp_path / name)
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i",
                        write_clip(tmp_path / "a.mp4", frames, rate=rate), "-c:v", "libvpx-vp9", "-deadline",
                        "realtime", "-c:a", "libopus", src], check=True)
    else:
        src = raw
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_video(make_config(f"input={src}", f"output={tmp_path / 'out.mp4'}", "flow.preset=ultrafast"))
    meta = probe(out)
    assert (meta.width, meta.height, meta.fps, meta.frames) == (*expected, rate, 4)
    assert any("padded" in str(w.message) for w in caught) == ((w, h) != expected)
    if name.endswith("webm"):
        assert probe(src).audio_codec == "opus" and meta.audio_codec == "aac"
        assert meta.audio_duration == pytest.approx(meta.duration, abs=0.03)


def test_output_size_keeps_the_aspect_with_an_even_side():
    m = VideoMeta(path="x", width=1920, height=1080, fps="30/1", frames=1, duration=1 / 30)
    assert output_size(m, 256, None) == (256, 144)
    assert output_size(m, None, 100) == (178, 100)
    assert output_size(m, 95, 61) == (95, 61)
    assert output_size(m, None, None) == (1920, 1080)


def fake_dreamer(calls):
    """Brightens by 8 levels per call and records the settings (and the step weight): energy that a
    carried dream accumulates."""
    def dream_frame(x, t, s, weight=None):
        calls.append(dict(s, weight=weight))
        return (x + 8 / 255).clamp(0, 1)

    return dream_frame


def test_cuts_restart_and_carried_frames_get_the_coherence_settings_without_creeping():
    a, b = panning(n=6, seed=1), panning(n=6, seed=2)
    frames = [f // 2 + 64 for f in a + b]  # mid-grey range: room to brighten without clipping
    cfg = make_config("coherence.blend=1.0", "coherence.iterations=3", "coherence.octaves=1",
                      "coherence.step=0.5", "coherence.new_step=0.5")
    calls, state = [], new_state()
    out = list(video_frames(cfg, iter(frames), fake_dreamer(calls), torch.device("cpu"), state, 30.0))
    kinds = [info["kind"] for _, info in out]
    assert kinds == ["key"] + ["warped"] * 5 + ["cut"] + ["warped"] * 5
    assert calls[1]["iterations"] == 3 and calls[1]["step"] == 0.5 and calls[0]["iterations"] == 2
    strengths = [info["strength"] for _, info in out]
    assert max(strengths) < 8.5  # held at the keyframe's 8 levels, not 8 more every frame
    assert state["t"] == 12 and state["dream"].shape == (1, 3, 48, 64) and state["source"] is frames[-1]

    cfg = make_config("coherence.blend=1.0", "coherence.strength_cap=0")
    out = list(video_frames(cfg, iter(frames[:6]), fake_dreamer([]), torch.device("cpu"), new_state(), 30.0))
    assert out[-1][1]["strength"] > 30  # uncapped, the carried dream gains 8 levels a frame


def test_cadence_touches_up_every_nth_frame_and_carries_the_dream_along_the_flow_between():
    frames = [f // 2 + 64 for f in panning(n=7, seed=1)]
    calls = []
    cfg = make_config("cadence=3", "cadence_touch_up=0", "coherence.blend=1.0")
    out = list(video_frames(cfg, iter(frames), fake_dreamer(calls), torch.device("cpu"), new_state(), 30.0))
    assert [info["kind"] for _, info in out] == ["key"] + ["warped"] * 6
    assert len(calls) == 3  # frames 0, 3 and 6; those between are carried without a step
    carried = [info["strength"] for _, info in out]
    assert all(s > 5 for s in carried)  # the keyframe's 8 levels travel along the flow to the frames between
    calls = []
    cfg = make_config("cadence=3", "cadence_touch_up=1", "coherence.blend=1.0")
    list(video_frames(cfg, iter(frames), fake_dreamer(calls), torch.device("cpu"), new_state(), 30.0))
    assert [c["iterations"] for c in calls] == [2, 1, 1, 2, 1, 1, 2]  # a one-step touch-up between


def test_maturity_is_carried_with_the_flow_and_grows_with_the_steps_taken():
    mask = torch.ones(1, 1, 4, 6)
    mask[..., -1] = 0.0  # the column entering the picture
    still = torch.zeros(1, 2, 4, 6)
    grown = carry_maturity(None, still, mask, 1.0)  # after a keyframe: all dreamed but what is new
    assert torch.equal(grown, mask)
    assert torch.equal(carry_maturity(grown * 0.5, still, mask, 0.5), grown * 0.25)
    steps = touch_up_step(grown, 0.1, 1.0)
    assert torch.allclose(steps[..., :-1], torch.full_like(steps[..., :-1], 0.1)) and torch.all(steps[..., -1] == 1.0)
    after = matured(grown, steps * 8, 60.0)  # 8 steps this frame against a keyframe's 4 x 10 x 1.5
    assert torch.all(after[..., :-1] == 1.0) and torch.allclose(after[..., -1], torch.tensor(8 / 60))
    assert torch.equal(matured(grown, steps * 8, 0.0), torch.ones_like(grown))


def test_the_picture_entering_a_pan_takes_the_new_step_until_it_is_dreamed():
    cfg = make_config("coherence.step=0.1", "coherence.new_step=1.0", "coherence.octaves=1",
                      "coherence.iterations=2", "dream.octaves=1", "dream.iterations=2", "dream.step=1.5")
    calls = []
    list(video_frames(cfg, iter(panning(n=6, speed=2.0, seed=4)), fake_dreamer(calls), torch.device("cpu"),
                      new_state(), 30.0))
    assert calls[0]["weight"] is None and calls[0]["step"] == 1.5  # the keyframe
    for c in calls[1:]:
        w = c["weight"]
        assert c["step"] == 1.0 and w.shape == (1, 1, 48, 64)
        assert float(w[..., -1].mean()) > 0.9  # the entering column: nearly the whole new step
        assert float(w[..., 8:-8].median()) == pytest.approx(0.1, abs=0.01)  # the carried dream: coherence.step
    # the columns entering at frame 1 (2 px a frame) mature: their weight falls as they move left
    weights = [float(calls[t]["weight"][..., 24, -2 * t - 1]) for t in (1, 2, 3)]
    assert weights == pytest.approx([1.0, 0.4, 0.16], abs=0.05)


def test_new_picture_grows_a_dream_like_the_rest_of_the_frame():
    """With a real network: the band entering a pan is dreamed far more with coherence.new_step than
    with the touch-up's own step, and not far beyond what a keyframe dreams there."""
    from dreamvid.pipeline.dreamer import dreamer

    frames = panning(n=8, speed=3.0, seed=5)
    edge = {}
    for new_step in (0.2, 3.0, None):
        extra = ["flow=none"] if new_step is None else [f"coherence.new_step={new_step}"]
        cfg = make_config("dream.step=3", "coherence.step=0.2", *extra)
        out = list(video_frames(cfg, iter(frames), dreamer(cfg, torch.device("cpu")), torch.device("cpu"),
                                new_state(), 30.0))
        x, src = out[-1][0], torch.from_numpy(frames[-1]).permute(2, 0, 1)[None].float() / 255
        edge[new_step] = float((x - src)[..., -12:].abs().mean()) * 255  # the last 4 frames' new picture
    assert edge[3.0] > 2 * edge[0.2]
    assert edge[3.0] < 2 * edge[None]  # flow=none: every frame a keyframe


def test_a_state_saved_mid_pan_continues_to_the_same_frames(tmp_path):
    """Everything frame t + 1 needs is in the state of frame t: a run split there through a saved
    state (as a checkpoint holds it) gives the frames of an unsplit run."""
    from dreamvid.pipeline.dreamer import dreamer

    frames = panning(n=7, speed=2.0, seed=6)
    cfg = make_config("dream.step=3")
    dream_frame = dreamer(cfg, torch.device("cpu"))
    whole = [x for x, _ in video_frames(cfg, iter(frames), dream_frame, torch.device("cpu"), new_state(), 30.0)]
    state = new_state()
    first = [x for x, _ in video_frames(cfg, iter(frames[:4]), dream_frame, torch.device("cpu"), state, 30.0)]
    assert state["maturity"] is not None and float(state["maturity"].min()) < 1.0  # the pan's new edge
    torch.save(state, tmp_path / "state.pt")

    def rest(**change):
        saved = dict(torch.load(tmp_path / "state.pt", weights_only=False), **change)
        state = restore_state(saved, torch.device("cpu"))
        return [x for x, _ in video_frames(cfg, iter(frames[4:]), dream_frame, torch.device("cpu"), state, 30.0)]

    assert all(torch.equal(a, b) for a, b in zip(whole, first + rest()))
    # without the maturity, the new edge would be taken for a grown dream: the state must hold it
    assert not torch.equal(rest(maturity=None)[0], whole[4])


def test_flow_computed_ahead_in_threads_gives_the_same_frames():
    frames = panning(n=8, seed=3)
    runs = []
    for workers in (0, 3):
        cfg = make_config(f"flow.workers={workers}")
        out = video_frames(cfg, iter(frames), fake_dreamer([]), torch.device("cpu"), new_state(), 30.0)
        runs.append([(x, info["kind"], info["unreliable"]) for x, info in out])
    assert [r[1:] for r in runs[0]] == [r[1:] for r in runs[1]]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*runs))


def test_per_frame_mode_dreams_every_frame_from_its_source():
    cfg = make_config("flow=none")
    calls = []
    out = list(video_frames(cfg, iter(panning(n=3)), fake_dreamer(calls), torch.device("cpu"), new_state(), 30.0))
    assert [info["kind"] for _, info in out] == ["key"] * 3
    assert all(c["iterations"] == 2 for c in calls)


def test_truncated_input_keeps_what_was_dreamed(tmp_path):
    src = write_clip(tmp_path / "long.mp4", panning(n=30, speed=0.5))
    data = open(src, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out.mp4"
    with pytest.raises(DreamvidError, match=r"decoding stopped after frame (\d+) of 30.*frames dreamed are in") as err:
        run_video(make_config(f"input={cut}", f"output={out}", "flow=none", "dream.iterations=1"))
    assert "\n" not in str(err.value)
    kept = probe(str(out))
    assert 0 < kept.frames < 30 and f"after frame {kept.frames} of" in str(err.value)
    # the audio there is to the end of the video dreamed (the cut file's audio ends where it was cut)
    assert kept.audio_duration == pytest.approx(min(kept.duration, probe(str(cut)).audio_duration), abs=0.03)


@pytest.mark.parametrize("input_,words", [(None, "needs input="), ("missing.mp4", "not found")])
def test_bad_input(tmp_path, input_, words):
    over = [f"input={tmp_path / input_}"] if input_ else []
    with pytest.raises(DreamvidError, match=words):
        run_video(make_config(*over, f"output={tmp_path / 'o.mp4'}"))


def test_bad_coherence_settings_name_the_choices(clip, tmp_path):
    from dreamvid import pipeline

    with pytest.raises(DreamvidError, match="residual, frame"):
        pipeline.run(make_config(f"input={clip}", "coherence.warp=both"))
    with pytest.raises(DreamvidError, match="ultrafast, fast, medium"):
        pipeline.run(make_config(f"input={clip}", "flow.preset=slow"))
    with pytest.raises(DreamvidError, match=r"coherence.new_step=-0.5 at frame 3 must be 0 or more"):
        pipeline.run(make_config(f"input={clip}", "coherence.new_step='0:(1), 4:(-1)'"))


def test_command_line_end_to_end(clip, tmp_path):
    out = tmp_path / "cli.mp4"
    run = subprocess.run([sys.executable, "-m", "dreamvid", "mode=video", f"input={clip}", f"output={out}",
                          "debug=tiny", "width=null", "height=null", "max_frames=3", "dream.octaves=1",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr
    assert probe(str(out)).frames == 3 and probe(str(out)).has_audio


def _decoded_audio(path):
    """The audio track decoded to raw 16-bit samples."""
    run = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-"],
                         capture_output=True, check=True)
    return run.stdout


def test_clip_killed_mid_render_resumes_to_the_same_frames_and_audio(tmp_path):
    import signal

    from conftest import read_video, run_cli, start_cli, wait_for_frames

    src = write_clip(tmp_path / "src.mp4", panning(n=12, w=48, h=32, speed=1.0))
    args = ["mode=video", f"input={src}", "debug=tiny", "width=null", "height=null", "dream.octaves=1",
            "dream.iterations=2", "coherence.octaves=1", "coherence.iterations=2", "seed=3", "progress=false"]
    one = {"OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref.mp4"
    r = run_cli(args + [f"output={ref}"], cwd=str(tmp_path), env=one)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "out.mp4"
    proc = start_cli(args + [f"output={out}"], str(tmp_path), env=one)
    wait_for_frames(str(out) + ".state", 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and os.path.isdir(str(out) + ".state")
    r = run_cli(args + [f"output={out}"], cwd=str(tmp_path), env=one)  # the same command continues
    assert r.returncode == 0, r.stderr
    got, want = read_video(str(out))[1], read_video(str(ref))[1]
    assert len(got) == len(want) == 12
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert _decoded_audio(out) == _decoded_audio(ref) and len(_decoded_audio(out)) > 0
    assert probe(str(out)).duration == pytest.approx(probe(src).duration)
    assert not os.path.exists(str(out) + ".state")
