import numpy as np
import pytest

from dreamvid.images import clouds, fit_size, read_image, save_image, to_rgb8
from dreamvid.errors import DreamvidError


def test_conversions_of_gray_alpha_16bit_and_palette(tmp_path):
    import imageio.v3 as iio
    from PIL import Image

    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (8, 1))
    iio.imwrite(tmp_path / "g.png", gray)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white
    iio.imwrite(tmp_path / "a.png", rgba)
    import cv2

    deep = (np.ones((8, 8, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).convert("P").save(tmp_path / "p.png")
    for name, expect in [("g.png", None), ("a.png", 255), ("d.png", 255), ("p.png", 100)]:
        img = read_image(str(tmp_path / name))
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        if expect is not None:
            assert abs(int(img.mean()) - expect) <= 3, name  # web palette: 100 -> 102


def test_bad_paths_get_clear_errors(tmp_path):
    with pytest.raises(DreamvidError, match="input not found"):
        read_image(str(tmp_path / "nope.png"))
    with pytest.raises(DreamvidError, match="dream.guide not found"):  # the setting the path came from
        read_image(str(tmp_path / "nope.png"), "dream.guide")
    with pytest.raises(DreamvidError, match=r"input is a folder, not an image: .* mode=video dreams it"):
        read_image(str(tmp_path))
    with pytest.raises(DreamvidError, match=r"dream.guide is a folder, not an image: [^ ]*$"):
        read_image(str(tmp_path), "dream.guide")
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(DreamvidError, match="cannot read"):
        read_image(str(tmp_path / "t.png"))


def test_fit_size_keeps_aspect_when_one_side_is_given():
    img = np.zeros((100, 200, 3), np.uint8)
    assert fit_size(img, 50, None).shape == (25, 50, 3)
    assert fit_size(img, None, 20).shape == (20, 40, 3)
    assert fit_size(img, 33, 17).shape == (17, 33, 3)


def test_builtin_start_image_is_deterministic_clouds():
    a, b = clouds(54, 96, seed=1), clouds(54, 96, seed=1)
    assert np.array_equal(a, b) and a.shape == (54, 96, 3)
    assert a[..., 2].mean() > a[..., 0].mean()  # a blue sky
    assert a.std() > 10  # with structure
    assert to_rgb8(a).shape == a.shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_upright_as_their_exif_orientation_says(tmp_path, orientation):
    from PIL import Image, ImageOps

    pixels = np.random.default_rng(orientation).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    path = str(tmp_path / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif)
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = read_image(path)
    assert got.shape == want.shape == ((10, 6, 3) if orientation >= 5 else (6, 10, 3))
    assert np.array_equal(got, want)


def test_pictures_are_saved_as_rgb_under_their_name_only_when_whole(tmp_path):
    import os

    import cv2

    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255
    save_image(str(tmp_path / "red.png"), red, {"comment": "dreamvid"})
    assert np.array_equal(cv2.imread(str(tmp_path / "red.png"))[..., ::-1], red)
    assert os.listdir(tmp_path) == ["red.png"]
    with pytest.raises(DreamvidError, match="cannot write"):
        save_image(str(tmp_path / "no_such_folder" / "x.png"), red)
    with pytest.raises(DreamvidError, match="use .png"):
        save_image(str(tmp_path / "x.tga"), red)
    assert os.listdir(tmp_path) == ["red.png"]


def test_a_png_whose_exif_follows_its_pixels_is_turned_too_and_one_without_is_not_decoded_for_it(tmp_path,
                                                                                                  monkeypatch):
    import struct
    import zlib

    from PIL import Image

    from dreamvid.images import exif_orientation

    pixels = np.random.default_rng(0).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = exif.tobytes()[6:]  # a PNG's eXIf chunk holds the TIFF structure without JPEG's "Exif\0\0"
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    raw = plain.read_bytes()
    late = tmp_path / "late.png"
    late.write_bytes(raw[:-12] + chunk + raw[-12:])  # just before IEND, after the pixels
    assert exif_orientation(str(late)) == 6 and read_image(str(late)).shape == (10, 6, 3)
    assert np.array_equal(read_image(str(late)), np.rot90(pixels, -1))

    def no_decoding(*args, **kwargs):
        raise AssertionError("PIL opened a PNG without EXIF")

    monkeypatch.setattr(Image, "open", no_decoding)
    assert exif_orientation(str(plain)) == 1 and np.array_equal(read_image(str(plain)), pixels)
