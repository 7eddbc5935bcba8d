import math

import torch

from dreamvid.motion import affine_theta, per_frame_zoom, transform


def test_fps_conversion_compounds_exactly():
    for fps in (12, 23.976, 29.97, 60):
        z = per_frame_zoom(1.5, fps)
        assert math.isclose(z ** fps, 1.5, rel_tol=1e-12)
    assert per_frame_zoom(1.0, 30) == 1.0


def test_identity_at_rate_one():
    x = torch.rand(1, 3, 17, 23)
    assert torch.equal(transform(x), x)
    theta = affine_theta(17, 23)
    assert torch.allclose(theta, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), atol=1e-6)


def test_translation_moves_content_by_whole_pixels():
    x = torch.zeros(1, 1, 20, 30)
    x[0, 0, 10, 12] = 1.0
    y = transform(x, tx=3, ty=-2, border="border")
    assert tuple((y[0, 0] == y.max()).nonzero()[0].tolist()) == (8, 15)


def test_zoom_magnifies_about_the_centre_and_never_blackens_borders():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 30] = 1.0  # 10 px right of the centre
    y = transform(x, zoom=2.0)
    assert tuple((y[0, 0] == y.max()).nonzero()[0].tolist()) in [(20, 40), (20, 39)]
    img = torch.rand(1, 3, 32, 48) * 0.5 + 0.5  # bright image: a black border would show as zeros
    for border in ("reflection", "border"):
        out = transform(img, zoom=0.8, angle=10, border=border)
        assert out.min() > 0.4


def test_rotation_is_counter_clockwise():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 30] = 1.0  # right of the centre
    y = transform(x, angle=90)
    r, c = (y[0, 0] == y.max()).nonzero()[0].tolist()
    assert (r, c) == (10, 20)  # now above the centre (y grows downwards)


def test_a_zoom_fed_back_blurs_evenly_so_no_cross_grows_through_its_fixed_point():
    # As in a zoom animation: resample, add fresh detail (the dream), repeat. Plain bilinear resampling
    # kept the rows through the fixed point 2.3x sharper than the median row.
    torch.manual_seed(0)
    x = torch.rand(1, 3, 108, 192)
    for _ in range(36):
        x = (transform(x, zoom=1.25 ** (1 / 12)) + 0.15 * (torch.rand_like(x) - 0.5)).clamp(0, 1)
    rows = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    cols = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    assert rows[44:64].max() < 1.3 * rows.median() and cols[86:106].max() < 1.3 * cols.median()
