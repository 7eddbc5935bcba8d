"""Zoom mode's frame loop: motion follows the (scheduled) settings frame by frame."""
import math

import torch

from conftest import make_config
from dreamvid.pipeline.zoom import zoom_frames


def _dot_distance(x: torch.Tensor) -> float:
    """Distance from the image centre to the brightness-weighted centre of the marker."""
    img = x[0, 0]
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    m = img.double()
    cy, cx = float((m * ys).sum() / m.sum()), float((m * xs).sum() / m.sum())
    return math.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)


def test_a_scheduled_zoom_changes_speed_where_the_schedule_says():
    fps = 10
    cfg = make_config("frames=12", f"fps={fps}", "motion.zoom='0:(1.0), 4:(1.0), 5:(2.0), 12:(2.0)'",
                      "motion.border=border")
    yy, xx = torch.meshgrid(torch.arange(121.0), torch.arange(121.0), indexing="ij")
    blob = torch.exp(-((xx - 70) ** 2 + (yy - 60) ** 2) / (2 * 2.0**2))  # a marker 10 px right of the centre
    x = blob.expand(1, 3, 121, 121).clone()
    frames = [f for f, _ in zoom_frames(cfg, x, lambda img, t, s: img)]
    d = [_dot_distance(f) for f in frames]
    still = [d[t + 1] / d[t] for t in range(0, 4)]
    moving = [d[t + 1] / d[t] for t in range(5, 9)]
    assert all(abs(r - 1.0) < 1e-3 for r in still), still  # zoom 1.0: the marker stays put
    assert all(abs(r - 2.0 ** (1 / fps)) < 0.01 for r in moving), moving  # 2x per second, compounded
