"""Optical flow between video frames, backward warping, and the forward-backward consistency mask.

Convention: a flow is (H, W, 2) float32 in pixels, (dx, dy), mapping each pixel of the first frame to
where it is in the second (OpenCV's convention). On the device a flow is a (1, 2, H, W) tensor.
To carry an image from frame i to frame i+1, sample it with the *backward* flow (i+1 -> i): each
pixel of frame i+1 looks up where it came from in frame i.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DreamvidError

METHODS = ("dis", "farneback", "none")
DIS_PRESETS = ("ultrafast", "fast", "medium")
DIS_SMOOTHNESS = 60.0

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Flow = Union[np.ndarray, torch.Tensor]


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def flow_estimator(method: str = "dis", preset: str = "medium") -> Optional[FlowFn]:
    """A function (frame a, frame b) -> flow (H, W, 2) mapping a's pixels to b; None for method=none.

    Frames are (H, W, 3) uint8 RGB. DIS (Kroeger et al. 2016) is fast and good; Farneback is the
    classic dense method, much slower at large sizes.
    """
    import cv2

    if method == "none":
        return None
    if method == "dis":
        if preset not in DIS_PRESETS:
            raise DreamvidError(f"flow.preset must be one of {', '.join(DIS_PRESETS)}, got {preset!r}")
        code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
        local = threading.local()  # a DIS object is not safe to share: one per thread that calls

        def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            dis = getattr(local, "dis", None)
            if dis is None:
                dis = local.dis = cv2.DISOpticalFlow_create(code)
                # Three times OpenCV's default smoothness (20): in flat regions (sky, walls) sensor noise
                # otherwise makes the flow ragged, and the consistency check then throws away the dream
                # there frame after frame (measured on scripts/make_clip.py's rocket shot: 10% -> 3%
                # unreliable). The variational refinement it weights is off in the ultrafast preset.
                dis.setVariationalRefinementAlpha(DIS_SMOOTHNESS)
            return dis.calc(_gray(a), _gray(b), None)

        return dis_flow
    if method == "farneback":
        def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, pyr_scale=0.5, levels=5, winsize=15,
                                                iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

        return farneback_flow
    raise DreamvidError(f"flow.method must be one of {', '.join(METHODS)}, got {method!r}")


def estimate_flow(a: np.ndarray, b: np.ndarray, method: str = "dis", preset: str = "medium") -> np.ndarray:
    """Flow (H, W, 2) float32 from frame a to frame b (both (H, W, 3) uint8 RGB)."""
    fn = flow_estimator(method, preset)
    if fn is None:
        return np.zeros(a.shape[:2] + (2,), np.float32)
    return fn(a, b)


def to_device(flow: Flow, device: Union[torch.device, str] = "cpu") -> torch.Tensor:
    """(H, W, 2) array or (1, 2, H, W) tensor -> (1, 2, H, W) float32 tensor on the device."""
    if isinstance(flow, torch.Tensor):
        return flow.to(device=device, dtype=torch.float32)
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).to(device).permute(2, 0, 1)[None]


def sample(img: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear",
           padding_mode: str = "border") -> torch.Tensor:
    """Look up img (B, C, H, W) at absolute pixel coordinates coords (B, H', W', 2) as (x, y)."""
    h, w = img.shape[-2:]
    x, y = coords.split(1, dim=-1)
    grid = torch.cat([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(img, grid.to(img.dtype), mode=mode, padding_mode=padding_mode, align_corners=True)


def _coords(flow: torch.Tensor) -> torch.Tensor:
    """Pixel grid plus flow: (1, 2, H, W) -> (1, H, W, 2) absolute coordinates."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    return torch.stack([xs, ys], dim=-1)[None] + flow.permute(0, 2, 3, 1)


def warp(x: torch.Tensor, flow: Flow, mode: str = "bilinear") -> torch.Tensor:
    """Backward warp: out(p) = x(p + flow(p)). With the flow i+1 -> i this carries frame i onto frame i+1.

    x: (B, C, H, W); flow: (H, W, 2) array or (1, 2, H, W) tensor of the same H, W. Out-of-frame
    lookups repeat the border (the consistency mask marks those pixels unreliable). mode: bilinear or
    bicubic (sharper: repeated warps soften detail less).
    """
    f = to_device(flow, x.device)
    if f.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"flow {tuple(f.shape[-2:])} and image {tuple(x.shape[-2:])} sizes differ")
    return sample(x, _coords(f).expand(x.shape[0], -1, -1, -1), mode=mode)


def consistency(forward: Flow, backward: Flow) -> torch.Tensor:
    """Reliable pixels of frame i+1: (1, 1, H, W) float, 1 where the flow can be trusted, else 0.

    forward: flow i -> i+1; backward: flow i+1 -> i. After Ruder, Dosovitskiy & Brox 2016: with
    w~(x) = forward(x + backward(x)), a pixel is disoccluded where
    |w~ + backward|^2 > 0.01 (|w~|^2 + |backward|^2) + 0.5, and on a motion boundary where
    |grad u|^2 + |grad v|^2 > 0.01 |backward|^2 + 0.002; pixels whose source lies outside
    frame i are unreliable as well. Computed where the backward flow is (the CPU for arrays).
    """
    bwd = to_device(backward, backward.device if isinstance(backward, torch.Tensor) else "cpu")
    fwd = to_device(forward, bwd.device)
    h, w = bwd.shape[-2:]
    coords = _coords(bwd)
    fwd_back = sample(fwd, coords)
    occluded = (fwd_back + bwd).pow(2).sum(1) > 0.01 * (fwd_back.pow(2).sum(1) + bwd.pow(2).sum(1)) + 0.5
    padded = F.pad(bwd, (1, 1, 1, 1), mode="replicate")
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    boundary = (gx.pow(2) + gy.pow(2)).sum(1) > 0.01 * bwd.pow(2).sum(1) + 0.002
    x, y = coords[..., 0], coords[..., 1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(occluded | boundary | outside)).float()[:, None]
