"""Optical flow between video frames, backward warping, and the forward-backward consistency mask.

Convention: a flow is (H, W, 2) float32 in pixels, (dx, dy), mapping each pixel of the first frame to
where it is in the second (OpenCV's convention). On the device a flow is a (1, 2, H, W) tensor.
To carry an image from frame i to frame i+1, sample it with the *backward* flow (i+1 -> i): each
pixel of frame i+1 looks up where it came from in frame i.
"""
from __future__ import annotations

import math
import threading
from typing import Callable, Optional, Tuple, Union

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
        # A DIS object is not safe to share: one per thread that calls, per frame size, and one for flows
        # started from a shift apart from those started from none (once given a flow to start from, a DIS
        # object keeps starting from its last flow: an error that spreads to the next frames' flows)
        local = threading.local()

        def dis_flow(a: np.ndarray, b: np.ndarray, shift: Optional[Tuple[float, float]] = None) -> np.ndarray:
            """shift: where to start, (dx, dy) for every pixel (a pan's); None: from no motion."""
            objects = getattr(local, "dis", None)
            if objects is None:
                objects = local.dis = {}
            key = (a.shape, shift is not None)
            dis = objects.get(key)
            if dis is None:
                dis = objects[key] = cv2.DISOpticalFlow_create(code)
                # Three times OpenCV's default smoothness (20): in flat regions (sky, walls) sensor noise
                # otherwise makes the flow ragged, and the consistency check then throws away the dream
                # there frame after frame (measured on scripts/make_clip.py's rocket shot: 10% -> 3%
                # unreliable). The variational refinement it weights is off in the ultrafast preset.
                dis.setVariationalRefinementAlpha(DIS_SMOOTHNESS)
            start = None
            if shift is not None:
                start = np.empty(a.shape[:2] + (2,), np.float32)
                start[..., 0], start[..., 1] = shift
            return dis.calc(_gray(a), _gray(b), start)

        dis_flow.starts_from = True  # type: ignore[attr-defined]  # takes a shift to start from
        return dis_flow
    if method == "farneback":
        def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, pyr_scale=0.5, levels=5, winsize=15,
                                                iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

        return farneback_flow
    raise DreamvidError(f"flow.method must be one of {', '.join(METHODS)}, got {method!r}")


# A picture that moves as a whole by more than this (px) between two frames is a pan: the flow is also
# tried from that shift, which DIS's coarse-to-fine search misses beyond a tenth of the picture's width
GLOBAL_SHIFT_PX = 2.0
SHIFT_WIDTH = 256  # frames are compared at most this wide to find the shift


def global_shift(a: np.ndarray, b: np.ndarray) -> Tuple[float, float]:
    """How far frame b's picture has moved from frame a's as a whole, (dx, dy) px: phase correlation."""
    import cv2

    ga, gb = _gray(a), _gray(b)
    h, w = ga.shape
    scale = max(1, -(-w // SHIFT_WIDTH))
    if scale > 1:
        size = (max(8, w // scale), max(8, h // scale))
        ga, gb = (cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in (ga, gb))
    window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(ga.astype(np.float32), gb.astype(np.float32), window)
    return dx * w / ga.shape[1], dy * h / ga.shape[0]


def flow_pair(estimate: FlowFn, a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(forward flow a -> b, backward flow b -> a). Where the picture moves as a whole by more than
    GLOBAL_SHIFT_PX (a pan), DIS is also started from that shift, and the pair whose consistency check
    trusts more pixels is kept: a 30 px a frame pan across 192 px was a "scene cut" in 21 of 29 frames
    from no motion, in none from the shift. Flat frames have no shift to find."""
    forward, backward = estimate(a, b), estimate(b, a)
    if not getattr(estimate, "starts_from", False):
        return forward, backward
    if is_flat(a) or is_flat(b):  # a flat picture has no shift to find (phase correlation returns noise)
        return forward, backward
    dx, dy = global_shift(a, b)
    if math.hypot(dx, dy) <= GLOBAL_SHIFT_PX:
        return forward, backward
    shifted = estimate(a, b, (dx, dy)), estimate(b, a, (-dx, -dy))  # type: ignore[call-arg]
    if float(consistency(*shifted).mean()) > float(consistency(forward, backward).mean()):
        return shifted
    return forward, backward


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


# A frame whose brightness varies less than this across the picture (standard deviation of its luminance,
# 0-255 levels) has nothing to dream about or to follow: black, a white flash, a fade's first frames.
FLAT_STD = 3.0


def is_flat(frame: np.ndarray) -> bool:
    """Whether an (H, W, 3) uint8 frame is (almost) one flat colour: its flow says nothing of the scene, so
    the dream dreamed on it is not carried, and the first frame with content after it starts afresh."""
    small = frame[:: max(1, frame.shape[0] // 90), :: max(1, frame.shape[1] // 160)]  # a few thousand pixels
    luminance = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(luminance.std()) < FLAT_STD
