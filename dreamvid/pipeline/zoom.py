"""Zoom mode: dream a frame, move it a little (zoom / rotate / translate), feed it back, repeat."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np
import torch

from .. import dream as D
from ..config import Config
from ..images import clouds, fit_size, read_image, to_tensor, to_uint8
from ..model import DreamvidError, feature_net, resolve_device
from ..motion import per_frame_zoom, transform
from ..video import Encoder, config_metadata
from .common import SCHEDULED, config_dict, frame_settings, progress, resolve_output, save_config

# The built-in starting image's size when none is given: quick on a CPU, detailed on a GPU.
DEFAULT_SIZE = {"cpu": (384, 216), "cuda": (1280, 720)}


def start_image(cfg: Config, device: torch.device) -> np.ndarray:
    if cfg.input:
        return fit_size(read_image(cfg.input), cfg.width, cfg.height)
    w, h = DEFAULT_SIZE["cuda" if device.type == "cuda" else "cpu"]
    if cfg.width is not None and cfg.height is None:
        w, h = cfg.width, max(1, round(cfg.width * h / w))
    elif cfg.height is not None and cfg.width is None:
        w, h = max(1, round(cfg.height * w / h)), cfg.height
    elif cfg.width is not None and cfg.height is not None:
        w, h = cfg.width, cfg.height
    return clouds(h, w, seed=cfg.seed)


def dreamer(cfg: Config, device: torch.device) -> Callable[[torch.Tensor, int, dict], torch.Tensor]:
    """The model loaded once, and a function that dreams one frame with frame t's settings."""
    layers = list(cfg.dream.layers) or list(cfg.model.layers)
    feats = feature_net(cfg.model.name, layers, cfg.model.weights, device)
    guides = None
    if cfg.dream.guide:
        guide = fit_size(read_image(cfg.dream.guide), None, None)
        guides = D.guide_features(feats, to_tensor(guide, device), layers)

    def dream_frame(x: torch.Tensor, t: int, s: dict) -> torch.Tensor:
        weights = [float(w) for w in cfg.dream.layer_weights]
        objective = D.make_objective(feats, layers, weights, cfg.dream.channels, guides,
                                     guide_weight=s["guide_weight"])
        return D.dream(x, objective, octaves=int(round(s["octaves"])), octave_scale=s["octave_scale"],
                       iterations=int(round(s["iterations"])), step=s["step"], jitter=int(round(s["jitter"])),
                       min_size=cfg.model.min_size, generator=D.image_generator(cfg.seed, t))

    return dream_frame


def zoom_frames(cfg: Config, x: torch.Tensor, dream_frame, start: int = 0) -> Iterator[torch.Tensor]:
    """Yield dreamed frames start.. of the animation; x is the image that frame `start` dreams from."""
    for t in range(start, cfg.frames):
        s = frame_settings(cfg.dream, SCHEDULED["dream"], t, cfg.fps)
        x = dream_frame(x, t, s)
        yield x
        m = frame_settings(cfg.motion, SCHEDULED["motion"], t, cfg.fps)
        x = transform(x, zoom=per_frame_zoom(m["zoom"], cfg.fps), angle=m["angle"] / cfg.fps,
                      tx=m["tx"] / cfg.fps, ty=m["ty"] / cfg.fps, cx=m["cx"], cy=m["cy"],
                      border=cfg.motion.border)


def run_zoom(cfg: Config, output: Optional[str] = None) -> str:
    """Render the zoom animation; returns the output path."""
    device = resolve_device(cfg.device)
    if cfg.motion.zoom == 0:
        raise DreamvidError("motion.zoom=0 would shrink the picture to nothing: use 1 for no zoom, >1 to zoom in")
    out = output or resolve_output(cfg, "dream.mp4")
    img = start_image(cfg, device)
    h, w = img.shape[:2]
    dream_frame = dreamer(cfg, device)
    x = to_tensor(img, device)
    meta = config_metadata(config_dict(cfg))
    with Encoder(out, w, h, cfg.fps, metadata=meta, overwrite=cfg.overwrite) as enc, \
            progress(cfg.frames, "dreaming", cfg.progress) as bar:
        for frame in zoom_frames(cfg, x, dream_frame):
            enc.write(to_uint8(frame))
            bar.update(1)
    save_config(cfg, out)
    return out
