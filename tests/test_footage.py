"""Footage as users bring it, through a whole dream: every container keeps its rate, its length and its
sound in sync (flashes and clicks at known frames, found again in the output); real clips from outside
the project; damaged frames, fades from black."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import footage
from conftest import read_video, run_cli
from dreamvid import pipeline
from dreamvid.video import probe, read_frames

FAST = ["mode=video", "width=null", "height=null", "dream.octaves=1", "dream.iterations=1",
        "coherence.octaves=1", "coherence.iterations=1", "device=cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("corpus"))
    return {clip.name: footage.make(clip, folder) for clip in footage.CORPUS}


def source_seconds(path: str) -> float:
    """How long the video of a file lasts by its own packets: first frame to the end of the last (PyAV)."""
    import av

    with av.open(path) as c:
        v = c.streams.video[0]
        packets = [(p.pts if p.pts is not None else p.dts, p.duration or 0) for p in c.demux(v)
                   if p.size and not p.is_discard]
        first = min(t for t, _ in packets)
        last, duration = max(packets)
        return float((last + duration - first) * v.time_base)


@pytest.mark.parametrize("clip", footage.CORPUS, ids=[c.name for c in footage.CORPUS])
def test_every_container_keeps_its_rate_length_and_sound_in_sync(corpus, clip, tmp_path, cfg_factory):
    src = corpus[clip.name]
    meta = probe(src)
    want = footage.expected(clip)
    if "rate" in want:
        assert meta.rate == want["rate"] and not meta.vfr
    else:  # resampled to its average rate, keeping its length
        assert meta.vfr and meta.frames == pytest.approx(want["frames"], abs=1)
    if clip.name.startswith("xvid"):  # libxvid leaves out the last two frames it was given
        assert meta.frames == want["frames"] - 2
    elif clip.cut:  # an edit list's frames: from the cut to the end, give or take the one it cuts through
        assert abs(meta.frames - want["frames"]) <= 1
    else:
        assert meta.frames == want["frames"]
    assert meta.duration == pytest.approx(source_seconds(src), abs=float(1 / meta.rate))
    if clip.rotate:
        assert meta.size == (footage.SIZE[1], footage.SIZE[0])

    out = str(tmp_path / "dream.mp4")
    pipeline.run(cfg_factory(*FAST, f"input={src}", f"output={out}"))
    flashes, rate, count = footage.video_flashes(out)
    assert probe(out).rate == meta.rate and count == meta.frames  # plays at the source's speed, all of it
    period = 1 / float(rate)
    # the flashes fall on the frames where the source has them, counted from its first frame
    expected = [round(t * float(rate)) for t in want["flashes"]]
    assert len(flashes) == len(expected) and all(abs(a - b) <= 1 for a, b in zip(flashes, expected)), \
        (flashes, expected)
    # and the clicks sound with them: within one frame period
    heard = footage.clicks(footage.audio_of(out))
    assert len(heard) == len(flashes), (heard, flashes)
    offsets = [c - f * period for c, f in zip(heard, flashes)]
    assert all(abs(o) <= period for o in offsets), (offsets, period)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    clips, why = footage.real_clips(str(tmp_path_factory.mktemp("opencv-doc")))
    if clips is None:
        pytest.skip(f"OpenCV's sample videos are not available: {why}")
    return clips


def test_a_real_xvid_clip_with_packed_b_frames_plays_at_its_own_speed_with_its_sound(real, tmp_path, cfg_factory):
    """Megamind.avi (Debian's opencv-doc): XviD with packed B-frames, AC3 sound, 23.976 fps."""
    src = real["Megamind.avi"]
    meta = probe(src)
    assert (meta.fps, meta.frames, meta.audio_codec) == ("2997/125", 270, "ac3")
    assert meta.duration == pytest.approx(11.26, abs=0.01)
    out = str(tmp_path / "dream.mp4")
    pipeline.run(cfg_factory(*FAST, "width=96", "dream.iterations=0", "coherence.iterations=0", "flow=none",
                             f"input={src}", f"output={out}"))
    got = probe(out)
    assert (got.fps, got.frames) == ("2997/125", 270) and got.duration == pytest.approx(meta.duration)
    # frame for frame the source's (decoded by the ffmpeg program, at the output's size), in order
    _, frames = read_video(out)
    w, h = got.size
    raw = subprocess.run([footage.ffmpeg_exe(), "-v", "error", "-i", src, "-fps_mode", "passthrough",
                          "-vf", f"scale={w}:{h}:flags=area",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    source = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert len(source) == len(frames) == 270

    def apart(shift: int) -> float:  # output frame i against source frame i + shift, over the clip
        pairs = [(frames[i], source[i + shift]) for i in range(3, 267)]
        return float(np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in pairs]))

    aligned = apart(0)
    assert aligned < 2.5 and all(apart(s) > aligned + 1 for s in (-2, -1, 1, 2)), [apart(s) for s in range(-2, 3)]
    # its sound under its frames: no later and no earlier than one frame period
    lag = footage.lag(footage.audio_of(src, start=meta.start, seconds=meta.duration), footage.audio_of(out))
    assert abs(lag) <= float(1 / meta.rate), lag


def test_real_old_codecs_and_a_clip_whose_frames_are_mostly_empty(real, tmp_path, cfg_factory):
    """vtest.avi (DivX 3, 10 fps) and tree.avi (Cinepak: 68 pictures in 444 slots of 1/15 s)."""
    vtest = probe(real["vtest.avi"])
    assert (vtest.fps, vtest.frames, vtest.codec) == ("10/1", 795, "msmpeg4v3")
    tree = probe(real["tree.avi"])
    assert tree.vfr and tree.frames == 68 and tree.duration == pytest.approx(29.6, abs=float(1 / tree.rate))
    out = str(tmp_path / "tree.mp4")
    pipeline.run(cfg_factory(*FAST, "width=96", f"input={real['tree.avi']}", f"output={out}"))
    got = probe(out)
    assert got.frames == 68 and got.duration == pytest.approx(tree.duration, abs=float(1 / tree.rate))


def test_damaged_frames_are_counted_in_one_warning_and_the_dream_still_finishes(tmp_path):
    src = str(tmp_path / "clip.mp4")
    footage.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-frames:v", "50", "-c:v", "libx264",
                   "-g", "10", "-pix_fmt", "yuv420p", src)
    data = bytearray(open(src, "rb").read())
    rng = np.random.default_rng(3)
    for k in range(5):  # five runs of garbage in the frames' data (the index, at the end, is whole)
        at = int(len(data) * (0.2 + 0.1 * k))
        data[at:at + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "dream.mp4"
    r = run_cli(["debug=tiny", *FAST, f"input={damaged}", f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if "had decode errors and" in ln]
    assert len(warned) == 1 and "were concealed" in warned[0] and "damaged.mp4" in warned[0], r.stderr
    assert int(warned[0].split("warning: ")[1].split()[0]) >= 1
    assert probe(str(out)).frames == 50
    clean = run_cli(["debug=tiny", *FAST, f"input={src}", f"output={tmp_path / 'clean.mp4'}"], cwd=str(tmp_path))
    assert clean.returncode == 0 and "decode errors" not in clean.stderr


def test_a_fade_from_black_starts_its_dream_afresh_at_the_first_frame_with_content(tmp_path, cfg_factory):
    src = str(tmp_path / "fade.mp4")
    # four black frames, then a photo-like pattern fading in over six frames, still
    footage.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=12", "-vf",
                   "fade=in:start_frame=4:nb_frames=6", "-frames:v", "16", "-c:v", "libx264", "-qp", "0", src)
    meta, frames = read_frames(src)
    sources = [f.astype(np.float32) for f in frames]
    from dreamvid.flow import is_flat

    flat = [is_flat(f.astype(np.uint8)) for f in sources]
    first = flat.index(False)
    assert flat[:4] == [True] * 4 and first <= 5
    out = tmp_path / "dream"
    pipeline.run(cfg_factory("mode=video", "width=null", "height=null", "device=cpu", "dream.iterations=4",
                             f"input={src}", f"output={out}/"))
    import imageio.v3 as iio

    dreams = [iio.imread(out / f"frame_{i:06d}.png").astype(np.float32) for i in range(16)]
    residual = [d - s for d, s in zip(dreams, sources)]
    on_black, on_content = residual[first - 1].ravel(), residual[first].ravel()
    correlation = float(np.corrcoef(on_black, on_content)[0, 1])
    assert np.abs(on_black).mean() > 2  # black was dreamed (swirls on black)...
    assert correlation <= 0.3, correlation  # ...but that dream is not carried onto the picture that follows
    carried = float(np.corrcoef(residual[first].ravel(), residual[first + 1].ravel())[0, 1])
    assert carried > 0.5, carried  # the new one is
