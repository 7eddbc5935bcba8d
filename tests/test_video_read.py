"""Reading clips: exact frame rates, frame counts, containers, audio, bad media, flat memory."""
import subprocess
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
import torch

from dreamvid.flow import consistency, flow_estimator, warp
from dreamvid.errors import DreamvidError
from dreamvid.video import TruncatedVideo, ffmpeg_exe, probe, read_frames


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def lavfi_clip(path, size="96x64", rate="30000/1001", frames=24, audio=False, codec=("-c:v", "libx264"),
               extra=()):
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac", "-shortest"]
    ffmpeg(*args, "-frames:v", str(frames), *codec, *extra, str(path))
    return str(path)


def test_probe_reads_exact_rate_count_duration_and_audio(tmp_path):
    path = lavfi_clip(tmp_path / "a.mp4", frames=24, audio=True, extra=("-pix_fmt", "yuv420p"))
    meta = probe(path)
    assert (meta.width, meta.height) == (96, 64)
    assert meta.fps == "30000/1001" and meta.rate == Fraction(30000, 1001)
    assert meta.frames == 24 and not meta.vfr
    assert meta.duration == pytest.approx(24 * 1001 / 30000)
    assert meta.has_audio and meta.audio_codec == "aac"
    assert meta.audio_duration == pytest.approx(meta.duration, abs=0.05)
    assert meta.truncated is None


def test_read_frames_yields_every_frame_resized_and_stops_at_max_frames(tmp_path):
    path = lavfi_clip(tmp_path / "a.mp4", frames=12, extra=("-pix_fmt", "yuv420p"))
    meta, frames = read_frames(path)
    got = list(frames)
    assert len(got) == meta.frames == 12
    assert got[0].shape == (64, 96, 3) and got[0].dtype == np.uint8 and got[0].flags.writeable
    assert not np.array_equal(got[0], got[-1])  # testsrc moves
    _, frames = read_frames(path, size=(40, 30), max_frames=5)
    small = list(frames)
    assert len(small) == 5 and small[0].shape == (30, 40, 3)


# Each container with the timestamps it typically carries: mp4 exact ticks, webm/mkv rounded to 1 ms,
# avi one tick per frame. Odd and non-multiple-of-16 sizes pass through untouched
# (lavfi `testsrc`, unlike `testsrc2`, makes odd sizes).
@pytest.mark.parametrize("name,size,rate,codec", [
    ("a.mkv", "95x61", "30000/1001", ("-c:v", "ffv1")),
    ("a.webm", "72x40", "24000/1001", ("-c:v", "libvpx-vp9", "-deadline", "realtime")),
    ("a.avi", "88x50", "25", ("-c:v", "mpeg4")),
    ("a.mov", "100x56", "60000/1001", ("-c:v", "libx264", "-pix_fmt", "yuv420p")),
])
def test_containers_and_sizes(tmp_path, name, size, rate, codec):
    path = lavfi_clip(tmp_path / name, size=size, rate=rate, frames=15, codec=codec)
    meta, frames = read_frames(path)
    w, h = (int(v) for v in size.split("x"))
    assert (meta.width, meta.height, meta.fps, meta.frames) == (w, h, rate if "/" in rate else f"{rate}/1", 15)
    assert sum(1 for _ in frames) == 15


def test_variable_frame_rate_is_read_at_its_average_rate_keeping_the_duration(tmp_path):
    # drop every third frame of a 30 fps source: 20 fps on average, uneven timestamps
    path = lavfi_clip(tmp_path / "vfr.mp4", rate="30", frames=30,
                      extra=("-vf", "select='not(eq(mod(n\\,3)\\,2))'", "-fps_mode", "vfr", "-pix_fmt", "yuv420p"))
    meta, frames = read_frames(path)
    assert meta.vfr
    assert float(meta.rate) == pytest.approx(20.0, rel=0.03)
    assert meta.duration == pytest.approx(1.5, abs=0.07)
    assert sum(1 for _ in frames) == meta.frames == pytest.approx(30, abs=1)


def test_rotation_tag_swaps_the_sides(tmp_path):
    src = lavfi_clip(tmp_path / "a.mp4", size="64x48", frames=3, extra=("-pix_fmt", "yuv420p"))
    rotated = str(tmp_path / "r.mp4")
    ffmpeg("-display_rotation", "90", "-i", src, "-c", "copy", rotated)
    meta, frames = read_frames(rotated)
    assert (meta.width, meta.height, meta.rotation) == (48, 64, 90)
    assert next(frames).shape == (64, 48, 3)


def test_a_cut_made_without_reencoding_counts_the_frames_it_decodes(tmp_path):
    src = lavfi_clip(tmp_path / "a.mp4", size="64x48", rate="24", frames=96, extra=("-g", "24", "-pix_fmt", "yuv420p"))
    cut = str(tmp_path / "cut.mp4")
    ffmpeg("-ss", "1.3", "-i", src, "-t", "1", "-c", "copy", cut)  # an edit list over the pre-roll from 1.0 s
    meta, frames = read_frames(cut)
    assert meta.frames == sum(1 for _ in frames) < 30  # not the 8 pre-roll packets the decoder drops


def test_audio_is_taken_from_where_a_late_video_stream_starts(tmp_path):
    from dreamvid.video import Encoder

    video = lavfi_clip(tmp_path / "v.mp4", size="64x48", rate="24", frames=24, extra=("-pix_fmt", "yuv420p"))
    audio = str(tmp_path / "a.m4a")  # 0.5 s of silence, then a tone
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-filter_complex", "[0]atrim=0:0.5[s];[s][1]concat=n=2:v=0:a=1[a]", "-map", "[a]", "-t", "1.5",
           "-c:a", "aac", audio)
    late = str(tmp_path / "late.mp4")
    ffmpeg("-itsoffset", "0.5", "-i", video, "-i", audio, "-map", "0:v", "-map", "1:a", "-c", "copy", late)
    meta, frames = read_frames(late)
    assert meta.start == pytest.approx(0.5, abs=0.01)
    out = str(tmp_path / "out.mp4")
    with Encoder(out, 64, 48, meta.fps, audio=late, audio_start=meta.start) as enc:
        for f in frames:
            enc.write(f)
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", out, "-map", "0:a", "-f", "f32le", "-ac", "1", "-"],
                         capture_output=True, check=True).stdout
    samples = np.frombuffer(pcm, np.float32)
    assert len(samples) == pytest.approx(48000, rel=0.05)  # the frames' second
    assert np.sqrt(np.mean(samples[: 24000] ** 2)) > 0.03  # the tone under the first frames, not the silence


def test_non_square_pixels_are_read_at_the_displayed_width(tmp_path):
    path = lavfi_clip(tmp_path / "a.mp4", size="64x36", frames=2, extra=("-vf", "setsar=2", "-pix_fmt", "yuv420p"))
    meta, frames = read_frames(path)
    assert meta.size == (128, 36) and meta.sar == "2/1"
    assert next(frames).shape == (36, 128, 3)


def test_bad_media_is_a_one_line_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.5", "-c:a", "aac", str(audio))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("frames come later\n")
    still = tmp_path / "still.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(still))
    for path, words in [(text, "cannot read"), (empty, "cannot read"), (audio, "no video stream"),
                        (still, "still image"), (tmp_path / "missing.mp4", "not found"),
                        (tmp_path / "nothing", "holds no pictures")]:
        with pytest.raises(DreamvidError, match=words) as err:
            probe(str(path))
        assert "\n" not in str(err.value)


def test_truncated_file_says_where_decoding_stopped(tmp_path):
    path = lavfi_clip(tmp_path / "a.mp4", size="128x96", frames=60, audio=True,
                      extra=("-pix_fmt", "yuv420p", "-movflags", "+faststart"))
    data = open(path, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the front: the frames are cut off
    meta, frames = read_frames(str(cut))
    assert meta.truncated and meta.indexed_frames == 60
    got = 0
    with pytest.raises(TruncatedVideo, match=r"decoding stopped after frame \d+ of 60") as err:
        for _ in frames:
            got += 1
    assert 0 < got < 60 and err.value.frames == got
    assert "\n" not in str(err.value)


def test_memory_is_flat_in_clip_length(tmp_path):
    """read_frames + flow + warp over a clip 10x longer allocate no more."""
    path = lavfi_clip(tmp_path / "long.mp4", size="64x48", rate="30", frames=300,
                      extra=("-pix_fmt", "yuv420p", "-preset", "ultrafast"))
    estimate = flow_estimator("dis", "ultrafast")

    def peak(n: int) -> int:
        tracemalloc.start()
        prev = None
        _, frames = read_frames(path, max_frames=n)
        for frame in frames:
            if prev is not None:
                bwd = estimate(frame, prev)
                mask = consistency(estimate(prev, frame), bwd)
                warp(torch.from_numpy(prev).permute(2, 0, 1)[None].float(), bwd).mul_(mask)
            prev = frame
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    short, long = peak(30), peak(300)
    assert long < short + 256 * 1024, (short, long)


def test_a_folder_of_pictures_is_a_clip_in_natural_order_at_the_rate_given(tmp_path):
    import imageio.v3 as iio

    for i in range(1, 11):  # frame_2 comes before frame_10
        iio.imwrite(tmp_path / f"frame_{i}.png", np.full((36, 48, 3), i * 20, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame\n")
    iio.imwrite(tmp_path / ".hidden.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "sub").mkdir()
    meta = probe(str(tmp_path), fps=24)
    assert (meta.frames, meta.rate, meta.size, meta.has_audio) == (10, 24, (48, 36), False)
    assert meta.duration == pytest.approx(10 / 24)
    _, frames = read_frames(str(tmp_path), max_frames=4, meta=meta)
    assert [int(f[0, 0, 0]) for f in frames] == [20, 40, 60, 80]
    _, frames = read_frames(str(tmp_path), size=(24, 18), meta=meta)
    frames = list(frames)
    assert len(frames) == 10 and frames[9].shape == (18, 24, 3) and abs(int(frames[9][5, 5, 0]) - 200) <= 1


def test_a_folder_of_frames_must_have_one_size_and_turns_phone_pictures_upright(tmp_path):
    from PIL import Image

    for i in range(2):  # stored 64x48, EXIF orientation 6: shown 48x64
        img = Image.fromarray(np.full((48, 64, 3), 90, np.uint8))
        exif = img.getexif()
        exif[0x0112] = 6
        img.save(tmp_path / f"p{i}.jpg", exif=exif)
    meta, frames = read_frames(str(tmp_path))
    assert meta.size == (48, 64) and next(frames).shape == (64, 48, 3)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "p2.jpg")
    with pytest.raises(DreamvidError, match=r"p2.jpg is 64x48, but p0.jpg is 48x64: the frames of a folder must"):
        probe(str(tmp_path))


def test_reading_from_a_later_frame_gives_the_same_frames_and_skips_a_folders_earlier_pictures(tmp_path):
    import imageio.v3 as iio

    path = lavfi_clip(tmp_path / "a.mp4", frames=8, extra=("-pix_fmt", "yuv420p"))
    whole = list(read_frames(path)[1])
    later = list(read_frames(path, max_frames=6, start=2)[1])
    assert len(later) == 4 and all(np.array_equal(a, b) for a, b in zip(later, whole[2:6]))
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, f in enumerate(whole):
        iio.imwrite(folder / f"s{i}.png", f)
    meta = probe(str(folder))
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(b"gone")  # not read again
    later = list(read_frames(str(folder), meta=meta, start=3)[1])
    assert len(later) == 5 and all(np.array_equal(a, b) for a, b in zip(later, whole[3:]))


def test_a_folder_mixing_kinds_of_picture_is_warned_about_and_what_pil_cannot_open_is_sized_by_opencv(tmp_path):
    import cv2
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "s0.png", np.full((24, 32, 3), 10, np.uint8))
    iio.imwrite(tmp_path / "s1.jpg", np.full((24, 32, 3), 10, np.uint8))
    assert cv2.imwrite(str(tmp_path / "s2.tif"), np.full((24, 32, 3), 0.5, np.float32))  # PIL cannot open it
    with pytest.warns(UserWarning, match=r"holds \.jpg and \.png and \.tif pictures: all 3 are frames, in name order"):
        meta = probe(str(tmp_path))
    assert meta.frames == 3 and [f.shape for f in read_frames(str(tmp_path), meta=meta)[1]] == [(24, 32, 3)] * 3


def test_a_folder_is_read_ahead_in_order_and_a_bad_picture_stops_it_after_the_frames_before(tmp_path):
    import threading

    import imageio.v3 as iio

    for i in range(12):
        iio.imwrite(tmp_path / f"f{i:02d}.png", np.full((8, 8, 3), i * 10, np.uint8))
    meta = probe(str(tmp_path))
    (tmp_path / "f07.png").write_bytes(b"damaged")
    got = []
    with pytest.raises(DreamvidError, match="f07.png"):
        for frame in read_frames(str(tmp_path), meta=meta)[1]:
            got.append(int(frame[0, 0, 0]))
    assert got == [0, 10, 20, 30, 40, 50, 60]
    frames = read_frames(str(tmp_path), meta=meta)[1]
    next(frames)
    frames.close()  # stopped early: its reading threads end
    assert not any(t.name.startswith("dreamvid-pictures") for t in threading.enumerate())
