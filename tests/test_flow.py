"""Optical flow direction, backward warping and the consistency mask on patterns with known motion."""
import numpy as np
import pytest
import torch

from dreamvid.flow import consistency, estimate_flow, flow_estimator, to_device, warp
from dreamvid.errors import DreamvidError


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture with detail at several scales (what flow needs to lock onto)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((6, 1.0), (16, 0.6), (48, 0.35)):
        grid = rng.random((cells, max(2, cells * w // h), 3)).astype(np.float32)
        img += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min())
    return np.round(img * 255).astype(np.uint8)


def as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


BIG = texture(160, 220)
A = BIG[20:116, 20:148]  # frame i
B = BIG[22:118, 17:145]  # frame i+1: the content moved 3 px right and 2 px up


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_known_shift_is_recovered(method):
    flow = estimate_flow(A, B, method)
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.1)  # dx: A's pixels move right
    assert np.median(inner[..., 1]) == pytest.approx(-2.0, abs=0.1)  # dy: and up


def test_backward_warp_carries_frame_i_onto_frame_i_plus_1():
    backward = estimate_flow(B, A)  # for each pixel of B, where it came from in A
    carried = warp(as_tensor(A), backward)[0].permute(1, 2, 0).numpy()
    err = np.abs(carried - B.astype(np.float32))[8:-8, 8:-8].mean()
    assert err < 1.0 < np.abs(A.astype(np.float32) - B)[8:-8, 8:-8].mean()


def test_warp_with_zero_flow_is_the_identity():
    x = torch.rand(2, 3, 17, 23)
    assert torch.allclose(warp(x, np.zeros((17, 23, 2), np.float32)), x, atol=1e-5)


def test_warp_by_a_whole_pixel_shifts_exactly():
    x = torch.rand(1, 3, 10, 12)
    flow = np.zeros((10, 12, 2), np.float32)
    flow[..., 0] = 1.0  # every output pixel looks one pixel to the right
    assert torch.allclose(warp(x, flow)[..., :-1], x[..., 1:], atol=1e-5)


def test_consistency_flags_the_region_a_moving_square_uncovers():
    bg = texture(96, 128, seed=1)
    square = texture(30, 30, seed=2)
    f0, f1 = bg.copy(), bg.copy()
    f0[30:60, 30:60] = square
    f1[30:60, 38:68] = square  # the square moves 8 px right over a still background
    mask = consistency(estimate_flow(f0, f1), estimate_flow(f1, f0))[0, 0].numpy()
    assert mask.shape == (96, 128)
    assert mask[33:57, 31:37].mean() < 0.35  # background uncovered behind the square: mostly unreliable
    assert mask[70:90, 80:120].mean() > 0.95  # still background far away: reliable


def test_consistency_flags_pixels_that_enter_the_frame():
    mask = consistency(estimate_flow(A, B), estimate_flow(B, A))[0, 0].numpy()
    assert mask[:, :3].mean() < 0.3  # content moved right: the left columns came from outside frame i
    assert mask[10:-10, 10:-10].mean() > 0.95


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_consistency_runs_where_the_flows_are_and_agrees_with_arrays(device):
    fwd, bwd = estimate_flow(A, B), estimate_flow(B, A)
    on_device = consistency(to_device(fwd, device), to_device(bwd, device))
    assert on_device.device.type == device
    from_arrays = consistency(fwd, bwd)
    assert from_arrays.device.type == "cpu"
    assert (on_device.cpu() != from_arrays).float().mean() < 1e-3  # float rounding at the thresholds only


def test_bad_settings_name_the_choices():
    with pytest.raises(DreamvidError, match="ultrafast, fast, medium"):
        flow_estimator("dis", "slow")
    with pytest.raises(DreamvidError, match="dis, farneback, none"):
        flow_estimator("lucas")
    assert flow_estimator("none") is None


def test_a_pan_of_a_sixth_of_the_picture_is_followed_from_its_global_shift():
    from skimage import data

    from dreamvid.flow import flow_pair, global_shift

    photo = data.rocket()  # 427x640: a real photo, with its flat sky
    a, b = photo[150:258, 100:292], photo[150:258, 130:322]  # 192x108 frames; the picture moves 30 px left
    assert global_shift(a, b) == pytest.approx((-30.0, 0.0), abs=0.5)
    estimate = flow_estimator("dis", "medium")
    plain = consistency(estimate(a, b), estimate(b, a))
    forward, backward = flow_pair(estimate, a, b)
    paired = consistency(forward, backward)
    inner = forward[10:-10, 10:-40]
    assert np.median(inner[..., 0]) == pytest.approx(-30.0, abs=0.5)
    assert float(paired.mean()) > 0.75 > float(plain.mean())  # a "scene cut" from no motion
    small = B, A  # a small shift is left to the plain search
    assert np.array_equal(flow_pair(estimate, *small)[0], estimate(*small))
