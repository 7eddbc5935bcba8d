import json
import os

import numpy as np
import pytest

from conftest import read_video
from dreamvid.errors import DreamvidError
from dreamvid.video import Encoder, output_kind, probe_metadata


def frames(n, h, w):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, i * 2, axis=1) for i in range(n)]


def test_mp4_round_trip_read_back_with_another_reader(tmp_path):
    out = str(tmp_path / "a.mp4")
    with Encoder(out, 80, 48, 24, metadata={"comment": "dreamvid config: " + json.dumps({"a": 1})}) as enc:
        for f in frames(10, 48, 80):
            enc.write(f)
    meta, got = read_video(out)
    assert len(got) == 10 and meta["size"] == (80, 48) and meta["fps"] == 24
    assert probe_metadata(out)["comment"] == 'dreamvid config: {"a": 1}'
    assert not os.path.exists(out + ".partial")


def test_lossless_output_gives_back_the_exact_frames_at_any_size(tmp_path):
    from dreamvid.video import read_frames

    out = str(tmp_path / "segment.mkv")
    want = frames(6, 33, 47)  # odd sides: no padding in a lossless RGB stream
    with Encoder(out, 47, 33, "30000/1001", lossless=True) as enc:
        for f in want:
            enc.write(f)
    meta, got = read_frames(out)
    assert meta.fps == "30000/1001" and meta.frames == 6
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_sizes_that_are_not_multiples_of_16_are_kept(tmp_path):
    out = str(tmp_path / "b.mp4")
    with Encoder(out, 70, 38, 30) as enc:
        for f in frames(3, 38, 70):
            enc.write(f)
    assert read_video(out)[0]["size"] == (70, 38)


@pytest.mark.parametrize("ext,container", [(".mkv", "matroska"), (".mov", "mov,mp4"), (".mp4", "mov,mp4")])
def test_a_video_is_written_in_its_extensions_container(tmp_path, ext, container):
    import subprocess

    from dreamvid.video import ffmpeg_exe

    out = str(tmp_path / ("a" + ext))
    with Encoder(out, 32, 24, 10) as enc:
        for f in frames(3, 24, 32):
            enc.write(f)
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", out], capture_output=True, text=True).stderr
    assert f"Input #0, {container}" in info and len(read_video(out)[1]) == 3


def test_a_gif_faster_than_its_format_plays_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match=r"fps=100 plays at 50 frames/s at most"):
        with Encoder(str(tmp_path / "fast.gif"), 32, 24, 100) as enc:
            enc.write(frames(1, 24, 32)[0])


def test_gif_and_png_frames(tmp_path):
    gif, folder = str(tmp_path / "a.gif"), str(tmp_path / "frames")
    for out in (gif, folder):
        with Encoder(out, 32, 24, 10) as enc:
            for f in frames(4, 24, 32):
                enc.write(f)
    import imageio.v3 as iio

    assert iio.imread(gif, index=None).shape[0] == 4
    assert sorted(os.listdir(folder)) == [f"frame_{i:06d}.png" for i in range(4)]
    assert output_kind("x.mp4") == "mp4" and output_kind(folder) == "png"
    with pytest.raises(DreamvidError, match="extension"):
        output_kind("x.avi2")


def test_a_still_output_is_one_picture_with_the_metadata_where_the_format_keeps_it(tmp_path):
    from PIL import Image

    yy, xx = np.mgrid[0:24, 0:32]
    frame = np.stack([xx * 8, yy * 10, 255 - xx * 4], -1).astype(np.uint8)  # smooth: lossy formats keep it
    meta = {"comment": "dreamvid config: " + json.dumps({"frames": 1})}
    for ext in (".png", ".jpg", ".jpeg", ".webp", ".PNG"):
        out = str(tmp_path / ("still" + ext))
        assert output_kind(out) == "image"
        with Encoder(out, 32, 24, 12, metadata=meta) as enc:
            enc.write(frame)
            with pytest.raises(DreamvidError, match="is one picture"):
                enc.write(frame)
        with Image.open(out) as im:
            assert im.size == (32, 24) and im.mode == "RGB"
            got = np.asarray(im)
            if ext.lower() == ".png":
                assert np.array_equal(got, frame) and im.text["comment"] == meta["comment"]
            if ext in (".jpg", ".jpeg"):
                assert im.info["comment"].decode() == meta["comment"]
        assert np.abs(got.astype(int) - frame).mean() < 2  # JPEG and WebP: the picture, at quality 95
    assert sorted(n for n in os.listdir(tmp_path) if "partial" in n) == []


def test_a_failed_still_leaves_no_partial_file_and_keeps_what_was_there(tmp_path):
    out = tmp_path / "still.png"
    out.write_bytes(b"precious")
    with pytest.raises(DreamvidError, match="overwrite=true"):
        Encoder(str(out), 32, 24, 10).open()
    with pytest.raises(RuntimeError):
        with Encoder(str(out), 32, 24, 10, overwrite=True) as enc:
            enc.write(frames(1, 24, 32)[0])
            raise RuntimeError("boom")
    assert out.read_bytes() == b"precious" and os.listdir(tmp_path) == ["still.png"]
    mine = tmp_path / "pic.partial.png"  # a name like a temporary one, but the user's
    mine.write_bytes(b"mine")
    with Encoder(str(tmp_path / "pic.png"), 32, 24, 10) as enc:
        enc.write(frames(1, 24, 32)[0])
    assert mine.read_bytes() == b"mine" and (tmp_path / "pic.png").exists()


def test_an_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "a.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(DreamvidError, match="overwrite=true"):
        Encoder(str(out), 32, 24, 10).open()
    assert out.read_bytes() == b"precious"


def test_overwrite_replaces_only_an_output_of_the_same_kind_that_dreamvid_wrote(tmp_path):
    frame = frames(1, 24, 32)[0]
    folder = tmp_path / "frames"
    with Encoder(str(folder), 32, 24, 10) as enc:
        enc.write(frame)
    with Encoder(str(folder), 32, 24, 10, overwrite=True) as enc:  # a folder of its own frames: replaced
        enc.write(frame)
        enc.write(frame)
    assert sorted(os.listdir(folder)) == ["frame_000000.png", "frame_000001.png"]
    (folder / "notes.txt").write_text("mine")
    (folder / "clip.mp4").write_bytes(b"mine too")
    with pytest.raises(DreamvidError, match=r"holds files dreamvid did not write \(clip.mp4, notes.txt\)"):
        Encoder(str(folder), 32, 24, 10, overwrite=True).open()
    assert (folder / "notes.txt").read_text() == "mine" and len(os.listdir(folder)) == 4
    a_file = tmp_path / "README"  # no extension: a folder output by its name
    a_file.write_text("mine")
    with pytest.raises(DreamvidError, match="is a file, not a folder"):
        Encoder(str(a_file), 32, 24, 10, overwrite=True).open()
    assert a_file.read_text() == "mine"


def test_a_failure_leaves_no_partial_file(tmp_path):
    out = str(tmp_path / "a.mp4")
    with pytest.raises(RuntimeError):
        with Encoder(out, 32, 24, 10) as enc:
            enc.write(frames(1, 24, 32)[0])
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
