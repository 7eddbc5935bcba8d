"""Colour coherence: histogram matching to a reference, in each space, and the measures of a long zoom."""
import cv2
import numpy as np
import pytest
import torch

from dreamvid import color


def picture(seed: int, h: int = 48, w: int = 64, gain=(1.0, 1.0, 1.0), offset: float = 0.0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img * np.array(gain, np.float32) + offset, 0, 1)
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("space", color.SPACES)
def test_a_full_match_gives_the_references_distribution_and_none_leaves_the_frame(space):
    ref_img, frame = picture(0), picture(1, gain=(0.8, 0.6, 0.7), offset=0.15)  # a cast, and less contrast
    ref = color.reference(ref_img, space)
    out = color.match(frame, ref, 1.0, space)
    assert out.shape == frame.shape and out.dtype == frame.dtype and 0 <= float(out.min()) <= float(out.max()) <= 1
    got = color.reference(out, space)
    channels = (1, 2) if space == "hsv" else (0, 1, 2)
    span = np.ptp(ref, axis=1)
    for c in channels:  # the middle of each matched channel's distribution lands on the reference's
        err = np.abs(got[c, 8:-8] - ref[c, 8:-8]).max() / span[c]
        assert err < 0.06, (space, c, err)
    before = np.abs(color.reference(frame, space)[list(channels)] - ref[list(channels)]).mean()
    assert np.abs(got[list(channels)] - ref[list(channels)]).mean() < 0.3 * before
    assert torch.equal(color.match(frame, ref, 0.0, space), frame)
    half = color.match(frame, ref, 0.5, space)
    assert 0.3 < float((half - frame).abs().mean() / (out - frame).abs().mean()) < 0.7


def test_hsv_keeps_each_pixels_hue():
    ref, frame = picture(0), picture(1, gain=(1.3, 0.6, 0.8))
    out = color.match(frame, color.reference(ref, "hsv"), 1.0, "hsv")
    hue = lambda x: cv2.cvtColor(x[0].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2HSV)[..., 0]  # noqa: E731
    sat = cv2.cvtColor(out[0].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2HSV)[..., 1]
    d = np.abs(hue(out) - hue(frame))
    d = np.minimum(d, 360 - d)[sat > 0.05]  # an angle; undefined where there is no colour
    assert np.median(d) < 1.0


def test_clipped_pixels_are_spread_over_the_references_top_not_kept_at_the_edge():
    ref = picture(0) * 0.9 + 0.05  # nothing at the edges
    frame = picture(2, gain=(1.6, 1.6, 1.6), offset=-0.2)  # a dream that pushed a quarter of it to 0 or 1
    clipped = lambda x: float(((x <= 0.5 / 255) | (x >= 254.5 / 255)).any(1).float().mean())  # noqa: E731
    assert clipped(frame) > 0.25
    out = color.match(frame, color.reference(ref), 1.0)
    assert clipped(out) < 0.03
    # the order of the pixels is kept: brighter stays brighter (a monotone map, ties broken by neighbours)
    a, b = frame[0, 0].flatten().numpy(), out[0, 0].flatten().numpy()
    keep = np.abs(a[:, None] - a[None, :]) > 0.02
    assert np.all((np.sign(a[:, None] - a[None, :]) == np.sign(b[:, None] - b[None, :]))[keep])


def test_the_measures_of_known_frames():
    grey = np.full((10, 10, 3), 100, np.uint8)
    m = color.measures(grey)
    assert m["luminance"] == pytest.approx(100, abs=0.01) and m["saturation"] == 0 and m["clipped"] == 0
    assert m["detail"] == 0
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    m = color.measures(red)
    assert m["saturation"] == 255 and m["clipped"] == 1 and m["luminance"] == pytest.approx(0.299 * 255, abs=0.01)
    checker = np.indices((10, 10)).sum(0) % 2 * 255
    m = color.measures(np.repeat(checker[..., None], 3, 2).astype(np.uint8))
    assert m["detail"] > 50  # high-frequency energy: a checkerboard is all edges
