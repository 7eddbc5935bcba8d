"""The modes: each chains the stages in its own order. Only this package knows the order."""
from __future__ import annotations

from typing import Sequence

from ..config import Config
from .common import absolute_inputs, check, resumed_config, warn_about_settings, with_frames


def run(cfg: Config, typed: Sequence[str] = ()) -> str:
    """Run the configured mode; returns the main output's path. `typed`: the settings the command line
    named, for warnings about those this mode ignores (not for a resumed render or a segment's job,
    which repeat a command already warned about)."""
    resuming = bool(cfg.resume)
    if resuming:
        cfg = resumed_config(cfg)
    cfg = with_frames(absolute_inputs(cfg))
    check(cfg)
    if not resuming and cfg.segment is None:
        warn_about_settings(cfg, typed)
    if cfg.mode == "zoom":
        from .zoom import run_zoom

        return run_zoom(cfg)
    if cfg.mode == "video":
        from .clip import run_video

        return run_video(cfg)
    from .neuron import run_neuron

    return run_neuron(cfg)["grid"]
