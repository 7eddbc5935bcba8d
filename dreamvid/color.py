"""Colour coherence: each frame of a zoom matched to a reference's colours, so that a long zoom keeps its
look instead of drifting (DeepDream fed back on itself pushes saturation up, luminance down and more
and more pixels to the gamut's edge, frame after frame).

The reference is a picture's colour distribution, per channel of a colour space: its quantiles
(`reference`). `match` moves a frame's distribution to it by histogram matching (each channel's values
mapped through its own quantiles onto the reference's), by `strength`, 0..1. RGB matches each primary;
LAB lightness and both colour axes; HSV saturation and value, leaving the hue. RGB is the default: over
a 1000-frame zoom it alone also kept the clipped pixels at the reference's share (LAB's matched colours
fall outside the RGB gamut and clip: docs/zoom.md).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

SPACES = ("rgb", "lab", "hsv")
QUANTILES = 129  # points of each channel's distribution kept as the reference
SAMPLE = 40_000  # at most this many pixels are sorted to find a frame's quantiles
TIE = 1e-3  # how far a value moves towards its neighbourhood's mean to break ties (`_ranked`)
_LEVELS = np.linspace(0.0, 1.0, QUANTILES)


def _convert(img: np.ndarray, space: str, back: bool = False) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> the channels of `space` (OpenCV's float conventions); back=True:
    the other way."""
    import cv2

    if space == "rgb":
        return img
    codes = {"lab": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB), "hsv": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)}[space]
    return cv2.cvtColor(img, codes[1] if back else codes[0])


def _channels(space: str) -> Tuple[int, ...]:
    return (1, 2) if space == "hsv" else (0, 1, 2)  # HSV's hue is an angle: it is left as it is


def _ranked(channel: np.ndarray) -> np.ndarray:
    """The channel with its ties broken by each pixel's neighbourhood: a dream clamps many pixels to the
    same end of the range, and a map of values alone keeps them all there (clipped, frame after frame).
    Moved a thousandth of the way to the 5x5 mean, the pixels of a tie are ordered by their surroundings
    and spread over the reference's top (or bottom) quantiles; other pixels keep their order but for
    values a thousandth of their neighbours' contrast apart."""
    import cv2

    return channel + TIE * (cv2.blur(channel, (5, 5)) - channel)


def _quantiles(channel: np.ndarray) -> np.ndarray:
    flat = channel.ravel()
    if flat.size > SAMPLE:  # an even subsample: the same pixels every time for the same size
        flat = flat[:: flat.size // SAMPLE]
    return np.quantile(flat, _LEVELS).astype(np.float32)


def _image(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).detach().cpu().numpy(), np.float32)


def reference(x: torch.Tensor, space: str = "rgb") -> np.ndarray:
    """The colour distribution of a (1, 3, H, W) picture in [0, 1]: (3, QUANTILES) quantiles per channel."""
    img = _convert(_image(x), space)
    return np.stack([_quantiles(img[..., c]) for c in range(3)])


def match(x: torch.Tensor, ref: np.ndarray, strength: float, space: str = "rgb") -> torch.Tensor:
    """x (1, 3, H, W) in [0, 1] with its colour distribution moved towards `ref` (from `reference`) by
    `strength` (0: x as it is, 1: the reference's distribution)."""
    if strength <= 0:
        return x
    img = _convert(_image(x), space)
    out = img.copy()
    for c in _channels(space):
        key = _ranked(img[..., c])
        own = _quantiles(key)
        # a channel with flat stretches (many equal values) has repeated quantiles: interp needs them rising
        own = np.maximum.accumulate(own + np.arange(QUANTILES, dtype=np.float32) * 1e-6)
        mapped = np.interp(key, own, ref[c]).astype(np.float32)
        out[..., c] = img[..., c] + min(float(strength), 1.0) * (mapped - img[..., c])
    rgb = np.clip(_convert(out, space, back=True), 0.0, 1.0)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(x.device, x.dtype)


def measures(rgb: np.ndarray) -> dict:
    """What a long zoom is watched by, of an (H, W, 3) uint8 frame: mean luminance (0-255), mean saturation
    (HSV, 0-255), the share of clipped pixels (a channel at 0 or 255), and detail: the mean absolute
    difference between the frame and its 3x3 box blur (high-frequency energy, levels)."""
    import cv2

    f = rgb.astype(np.float32)
    luminance = f @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    clipped = float(np.mean(np.any((rgb == 0) | (rgb == 255), axis=2)))
    detail = float(np.abs(luminance - cv2.blur(luminance, (3, 3))).mean())
    return {"luminance": float(luminance.mean()), "saturation": float(saturation.mean()), "clipped": clipped,
            "detail": detail}
