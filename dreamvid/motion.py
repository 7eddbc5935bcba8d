"""Zoom, rotation and translation as one affine resample on the device.

Rates are per second and converted to per frame exactly: a zoom compounds (rate ** (1/fps)), angles
and translations add up (rate / fps). Borders reflect or replicate; they are never black.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


BORDERS = ("reflection", "border")
SUPERSAMPLE = 2  # the resample runs at this multiple of the frame's size


def per_frame_zoom(zoom_per_second: float, fps: float) -> float:
    """Zoom factor per frame: compounding, so fps frames multiply to exactly the per-second rate. (Both
    positive: the settings are checked at the door, `config.MotionConfig.zoom`.)"""
    return zoom_per_second ** (1.0 / fps)


def affine_theta(height: int, width: int, *, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0,
                 ty: float = 0.0, cx: float = 0.5, cy: float = 0.5) -> torch.Tensor:
    """The (1, 2, 3) matrix for `affine_grid` (align_corners=False) that maps output to input coordinates.

    The content is scaled by `zoom` about (cx, cy) (fractions of the size), rotated counter-clockwise by
    `angle` degrees and moved by (tx, ty) pixels.
    """
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    px, py = cx * width - 0.5, cy * height - 0.5  # centre in pixel coordinates
    # input = centre + R(-angle) ((output - centre - t) / zoom), in pixels (y down).
    m = torch.tensor([[c, -s], [s, c]], dtype=torch.float64) / zoom
    off = torch.tensor([px, py], dtype=torch.float64) - m @ torch.tensor([px + tx, py + ty], dtype=torch.float64)
    pix = torch.eye(3, dtype=torch.float64)
    pix[:2, :2], pix[:2, 2] = m, off
    # normalised <- pixel: n = (2p + 1) / size - 1
    norm = torch.tensor([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]],
                        dtype=torch.float64)
    theta = norm @ pix @ torch.linalg.inv(norm)
    return theta[:2].unsqueeze(0).float()


def transform(x: torch.Tensor, *, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0, ty: float = 0.0,
              cx: float = 0.5, cy: float = 0.5, border: str = "reflection", clamp: bool = True) -> torch.Tensor:
    """Resample x (B, C, H, W) by one affine map; identity settings return x unchanged. border: one of
    BORDERS (checked at the door, `config.MotionConfig.border`). clamp: the result kept in [0, 1] (the
    bicubic step overshoots a little at edges); off for what is not a picture, such as a dream's signed
    residual."""
    if zoom == 1.0 and angle == 0.0 and tx == 0.0 and ty == 0.0:
        return x
    h, w = x.shape[-2:]
    # Resampled at twice the size and averaged back down. Bilinear resampling blurs each pixel by how
    # far its sample falls between pixels, which varies with the distance from the zoom's fixed point;
    # fed back frame after frame, the rows and columns through that point stayed sharp while all else
    # blurred: a cross grew through the middle of a zoom. At twice the size the blur is even.
    big = F.interpolate(x, scale_factor=SUPERSAMPLE, mode="bicubic", align_corners=False)
    theta = affine_theta(h * SUPERSAMPLE, w * SUPERSAMPLE, zoom=zoom, angle=angle, tx=tx * SUPERSAMPLE,
                         ty=ty * SUPERSAMPLE, cx=cx, cy=cy)
    grid = F.affine_grid(theta.to(x.device).expand(x.shape[0], 2, 3), list(big.shape), align_corners=False)
    moved = F.grid_sample(big, grid.to(x.dtype), mode="bilinear", padding_mode=border, align_corners=False)
    out = F.avg_pool2d(moved, SUPERSAMPLE)
    return out.clamp_(0.0, 1.0) if clamp else out
