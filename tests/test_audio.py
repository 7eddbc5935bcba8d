"""A song's loudness and onsets, per frame, and schedules that follow them: on sounds ffmpeg makes."""
import subprocess

import numpy as np
import pytest

from dreamvid import audio, schedule
from dreamvid.errors import DreamvidError
from dreamvid.video import ffmpeg_exe, probe

CLICKS = (0.5, 1.3, 2.1, 2.6)  # seconds; uneven, so that no period fits them
FPS = 12


def make_sound(path, expr: str, seconds: float, codec=("-c:a", "pcm_s16le")):
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"aevalsrc='{expr}':s=44100:d={seconds}", *codec, str(path)], check=True)
    return str(path)


def click_track(path, clicks=CLICKS, seconds=3.0, **kw):
    """Short 2 kHz bursts at `clicks` over a quiet 220 Hz hum."""
    bursts = "+".join(f"between(t,{c},{c + 0.01})" for c in clicks)
    return make_sound(path, f"0.05*sin(2*PI*220*t)+0.8*sin(2*PI*2000*t)*({bursts})", seconds, **kw)


def peaks(curve, above=0.5):
    return [i for i in range(len(curve)) if curve[i] >= above and curve[i] == max(curve[max(0, i - 2):i + 3])]


def test_the_onset_curve_peaks_within_a_frame_of_each_click(tmp_path):
    s = audio.analyse(click_track(tmp_path / "clicks.wav"))
    assert s.duration == pytest.approx(3.0, abs=0.01)
    frames = s.at_frames(FPS)
    assert len(frames.onset) == 36
    found = peaks(frames.onset)
    assert len(found) == len(CLICKS), found
    for frame, click in zip(found, CLICKS):
        assert abs(frame - click * FPS) <= 1.0, (frame, click * FPS)
    assert max(frames.onset) == 1.0 and float(np.median(frames.onset)) < 0.1  # the hum is no onset


def test_loudness_follows_the_envelope_of_the_sound(tmp_path):
    path = make_sound(tmp_path / "swell.wav", "sin(2*PI*330*t)*(0.05+0.9*gte(t,1))", 2.0)
    frames = audio.analyse(path).at_frames(FPS)
    quiet, loud = frames.loudness[2:10], frames.loudness[14:22]
    assert float(loud.mean()) > 0.9 and float(quiet.mean()) < 0.15
    assert all(0 <= v <= 1 for v in frames.loudness)


def test_any_sound_ffmpeg_reads_and_a_clips_track(tmp_path):
    mp3 = click_track(tmp_path / "clicks.mp3", codec=("-c:a", "libmp3lame"))
    found = peaks(audio.analyse(mp3).at_frames(FPS).onset)
    assert len(found) == len(CLICKS) and all(abs(f - c * FPS) <= 1.5 for f, c in zip(found, CLICKS))
    with pytest.raises(DreamvidError, match="no such file"):
        audio.analyse(str(tmp_path / "missing.wav"))
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DreamvidError, match="not a sound ffmpeg can read"):
        audio.analyse(str(tmp_path / "noise.wav"))


def test_schedules_read_the_signals_of_the_render_and_say_when_there_are_none():
    schedule.use_signals(None)
    with pytest.raises(DreamvidError, match=r"dream.step: onset\(t\) follows a sound: give audio="):
        schedule.at("0.5+4*onset(t)", 3, FPS, "dream.step")
    try:
        schedule.use_signals(audio.FrameSignals(np.array([0.0, 0.5, 1.0], np.float32),
                                                np.array([0.0, 1.0, 0.0], np.float32)))
        sched = schedule.parse("0.5+4*onset(t)", "dream.step")
        assert not sched.constant
        assert [sched(t, FPS) for t in range(4)] == [0.5, 4.5, 0.5, 0.5]  # after the sound: silence
        assert schedule.at("loudness(t + 0.5)", 0, FPS) == pytest.approx(0.25)  # between frames: linear
        assert not schedule.parse("loudness(1)").constant  # no variable, still the sound's
        assert schedule.at("loudness(1)", 0, FPS) == 0.5
    finally:
        schedule.use_signals(None)


def test_a_zoom_to_a_song_lasts_as_long_as_it_and_dreams_harder_on_the_clicks(tmp_path):
    from conftest import read_video, run_cli

    song = click_track(tmp_path / "clicks.wav")
    out = tmp_path / "beat.mp4"
    r = run_cli([f"audio={song}", "dream.step='0.2+6*onset(t)'", "fps=12", "width=64", "height=48",
                 "dream.octaves=1", "dream.iterations=3", "motion.zoom=1", f"output={out}"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    meta = probe(str(out))
    assert meta.frames == 36 and meta.has_audio  # three seconds of song at 12 fps, and the song in it
    assert meta.audio_duration == pytest.approx(3.0, abs=0.05)
    _, frames = read_video(str(out))
    change = [float(np.abs(b.astype(float) - a.astype(float)).mean()) for a, b in zip(frames, frames[1:])]
    found = peaks([0.0] + change, above=0.3 * max(change))  # change[i]: frame i to i + 1
    assert len(found) == len(CLICKS), (found, change)
    for frame, click in zip(found, CLICKS):
        assert abs(frame - click * FPS) <= 1.0, (found, [c * FPS for c in CLICKS])
