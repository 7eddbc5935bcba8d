"""Zoom mode: dream a frame, move it a little (zoom / rotate / translate), feed it back, repeat."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from ..config import Config
from ..images import clouds, fit_size, read_image, to_tensor, to_uint8
from ..model import resolve_device
from ..motion import per_frame_zoom, transform
from ..settings import frame_values
from .checks import warn_if_slow
from .context import Context
from .dreamer import dreamer, with_step_bar
from .outputs import resolve_output
from .render import render

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


def move(cfg: Config, x: torch.Tensor, t: int) -> torch.Tensor:
    """Frame t's motion: the image that frame t + 1 dreams from."""
    m = frame_values(cfg.motion, "motion", t, cfg.fps)
    return transform(x, zoom=per_frame_zoom(m["zoom"], cfg.fps), angle=m["angle"] / cfg.fps,
                     tx=m["tx"] / cfg.fps, ty=m["ty"] / cfg.fps, cx=m["cx"], cy=m["cy"], border=cfg.motion.border)


def zoom_frames(cfg: Config, x: torch.Tensor, dream_frame, start: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (dreamed frame t, the input of frame t + 1) for t = start..; x is frame start's input."""
    for t in range(start, cfg.frames):
        s = frame_values(cfg.dream, "dream", t, cfg.fps)
        frame = dream_frame(x, t, s)
        x = move(cfg, frame, t)
        yield frame, x


def run_zoom(cfg: Config, context: Optional[Context] = None) -> str:
    """Render the zoom animation; returns the output path."""
    context = context or Context()
    device = resolve_device(cfg.device)
    out = resolve_output(cfg, "dream.mp4", context.folder)
    img = start_image(cfg, device)
    h, w = img.shape[:2]
    if cfg.input:
        warn_if_slow(cfg, w, h, device.type)
    dream_frame = dreamer(cfg, device, context.report)
    one = cfg.frames == 1  # a still: its progress is in steps
    if one:
        dream_frame = with_step_bar(dream_frame, cfg)

    def produce(start: int, state):
        x = to_tensor(img, device) if state is None else state["input"].to(device)
        for frame, nxt in zoom_frames(cfg, x, dream_frame, start):
            yield to_uint8(frame), {"input": nxt}  # the checkpoint copies it to the host when it saves it

    return render(cfg, out, w, h, cfg.fps, cfg.frames, produce, inputs=(cfg.input, cfg.dream.guide),
                  frame_bar=not one)
