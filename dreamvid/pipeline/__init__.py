"""The modes: each chains the stages in its own order. Only this package knows the order."""
from __future__ import annotations

from ..config import Config
from .common import absolute_inputs, check, resumed_config, with_frames


def run(cfg: Config) -> str:
    """Run the configured mode; returns the main output's path."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    cfg = with_frames(absolute_inputs(cfg))
    check(cfg)
    if cfg.mode == "zoom":
        from .zoom import run_zoom

        return run_zoom(cfg)
    if cfg.mode == "video":
        from .clip import run_video

        return run_video(cfg)
    from .neuron import run_neuron

    return run_neuron(cfg)["grid"]
