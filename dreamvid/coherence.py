"""The maths that carries a dream from frame to frame of a clip: pure functions of tensors.

After Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer for videos"): the flow between
consecutive source frames carries the previous dream onto the current frame where a forward-backward
check trusts it (`carry`); a carried dream that is dreamed again every frame gains energy, so its
residual is bounded by the last keyframe's strength, overall and locally (`bound_residual`); each
pixel's maturity (how far it is dreamed) travels with the flow, and pixels new to the picture take a
larger step until they are dreamed (`carry_maturity`, `touch_up_step`, `matured`); `color_match`
undoes a colour cast. docs/video.md has the measurements behind them. Images are (1, 3, H, W) in [0, 1].
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .flow import warp

LOCAL = 9  # side of the neighbourhood (pixels) whose dream strength is bounded by the keyframe's


def carry(prev_dream: torch.Tensor, prev_source: torch.Tensor, source: torch.Tensor, backward,
          mask: torch.Tensor, *, warp_mode: str = "residual", blend: float = 1.0,
          interpolation: str = "bicubic") -> torch.Tensor:
    """The image frame t starts dreaming from: the previous dream warped onto it where reliable.

    residual: source + blend * mask * warp(prev_dream - prev_source): the picture is always the
    fresh source frame, only the dream's detail travels. frame: the whole previous dream is warped
    and blended over the source with weight blend * mask. All (1, 3, H, W) in [0, 1];
    backward is the flow t -> t-1, mask (1, 1, H, W) the reliable pixels of frame t.
    """
    weight = blend * mask
    if warp_mode == "residual":
        return (source + weight * warp(prev_dream - prev_source, backward, mode=interpolation)).clamp(0.0, 1.0)
    if warp_mode == "frame":
        return (source + weight * (warp(prev_dream, backward, mode=interpolation) - source)).clamp(0.0, 1.0)
    raise ValueError(f"warp_mode must be residual or frame, got {warp_mode!r}")


def strength(x: torch.Tensor, source: torch.Tensor) -> float:
    """Mean absolute residual, 0-255 levels."""
    return float((x - source).abs().mean()) * 255.0


def local_strength(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Mean absolute residual over each pixel's 9 x 9 neighbourhood, 0-255 levels: (1, 1, H, W)."""
    r = (x - source).abs().mean(1, keepdim=True) * 255.0
    return F.avg_pool2d(r, LOCAL, stride=1, padding=LOCAL // 2, count_include_pad=False)


def keyframe_limits(x: torch.Tensor, source: torch.Tensor) -> Tuple[float, float]:
    """(mean strength, 99th percentile of the local strength) of a fully dreamed frame."""
    return strength(x, source), float(torch.quantile(local_strength(x, source).flatten().float(), 0.99))


def bound_residual(x: torch.Tensor, source: torch.Tensor, mean: float, local: float) -> torch.Tensor:
    """Scale the residual x - source down where it is stronger than a keyframe's.

    Locally, no neighbourhood above `local` (repeated touch-ups otherwise dream ever deeper into the
    regions the network likes best, such as faces); overall, a mean absolute value of at most `mean`.
    Limits of 0 or less leave x as it is.
    """
    r = x - source
    if local > 0:
        r = r * (local / local_strength(x, source).clamp_min(1e-6)).clamp(max=1.0)
    s = float(r.abs().mean()) * 255.0
    if mean > 0 and s > mean:
        r = r * (mean / s)
    return (source + r).clamp(0.0, 1.0)


def color_match(x: torch.Tensor, source: torch.Tensor, amount: float) -> torch.Tensor:
    """Move x's LAB mean and standard deviation towards the source's by `amount` (0..1).

    Keeps the dream's patterns while undoing a colour cast or a change of contrast.
    """
    import cv2

    if amount <= 0:
        return x
    lab = [cv2.cvtColor(np.ascontiguousarray(t[0].permute(1, 2, 0).cpu().numpy(), np.float32), cv2.COLOR_RGB2LAB)
           for t in (x, source)]
    d, s = lab
    dm, ds = d.mean((0, 1)), d.std((0, 1)) + 1e-6
    sm, ss = s.mean((0, 1)), s.std((0, 1))
    matched = (d - dm) / ds * ss + sm
    mixed = d + min(amount, 1.0) * (matched - d)
    rgb = cv2.cvtColor(mixed.astype(np.float32), cv2.COLOR_LAB2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(x.device).clamp(0.0, 1.0)


def carry_maturity(maturity: Optional[torch.Tensor], backward, mask: torch.Tensor, blend: float) -> torch.Tensor:
    """How far each pixel of frame t is dreamed already, 0..1 (1: as far as a keyframe): frame t-1's
    maturity (None: a keyframe's, 1 everywhere) carried along the flow where it is reliable, 0 where
    the picture is new to frame t. Scaled by the blend like the carried dream: a blend below 1 lets
    the dream fade every frame, and the larger step renews it. (1, 1, H, W)."""
    weight = (blend * mask).clamp(0.0, 1.0)
    if maturity is None:
        return weight
    return warp(maturity, backward) * weight


def touch_up_step(maturity: torch.Tensor, step: float, new_step: float) -> torch.Tensor:
    """Each pixel's touch-up step: `new_step` where nothing is dreamed yet, `step` where the dream is
    grown, in between by maturity. (1, 1, H, W)."""
    return step + (new_step - step) * (1.0 - maturity)


def matured(maturity: torch.Tensor, dreamed: torch.Tensor, key_budget: float) -> torch.Tensor:
    """Maturity after a touch-up: `dreamed` is each pixel's sum of steps (steps x step size) this frame,
    counted against a keyframe's (octaves x iterations x step)."""
    if key_budget <= 0:
        return torch.ones_like(maturity)
    return (maturity + dreamed / key_budget).clamp(0.0, 1.0)
