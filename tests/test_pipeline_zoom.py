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


def test_a_layer_weight_schedule_keeps_one_objective_and_dreams_each_frames_weights(monkeypatch):
    from dreamvid import dream as D
    from dreamvid.model import feature_net
    from dreamvid.pipeline import zoom

    layers = ["blocks.4", "blocks.6"]
    cfg = make_config("model.layers=[blocks.4,blocks.6]", "dream.layer_weights=[1,'0:(0), 4:(2)']",
                      "dream.guide_weight=1", "speed.tile=0", "speed.fold_bn=off", "speed.channels_last=off")
    made = []
    real = D.make_objective
    monkeypatch.setattr(D, "make_objective", lambda *a, **k: made.append(1) or real(*a, **k))
    dream_frame = zoom.dreamer(cfg, torch.device("cpu"))
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    s = {"octaves": 1, "octave_scale": 1.4, "iterations": 2, "step": 1.5, "jitter": 8, "guide_weight": 1.0}
    feats = feature_net("lite0", layers)
    for t in (0, 2, 4):
        out = dream_frame(x, t, s)
        ref = D.dream(x, real(feats, layers, [1.0, t / 2]), octaves=1, iterations=2, step=1.5, jitter=8,
                      generator=D.image_generator(cfg.seed, t))
        assert torch.equal(out, ref), t
    assert len(made) == 1  # the weights changed in place: one objective, so CUDA graphs are kept
