"""The sound a render's schedules follow: `audio=`, or in video mode the clip's own sound.

`listen` analyses it (dreamvid.audio) when a render needs it, hands its per-frame loudness and onsets to
the schedules (`schedule.use_signals`), and gives a zoom without `frames=` the song's length.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

from .. import audio, schedule
from ..config import Config, scheduled
from ..errors import DreamvidError

SECTIONS = ("dream", "motion", "coherence", "color")


def follows_sound(cfg: Config) -> bool:
    """Whether any scheduled setting calls loudness() or onset()."""
    for section in SECTIONS:
        values = getattr(cfg, section)
        for name in scheduled(section):
            value = getattr(values, name)
            if isinstance(value, str) and "audio" in schedule.parse(value, f"{section}.{name}").uses:
                return True
    weights = cfg.dream.layer_weights
    return any(isinstance(w, str) and "audio" in schedule.parse(w, "dream.layer_weights").uses for w in weights)


def source(cfg: Config) -> Optional[str]:
    """The sound of this render: audio=, else (video) the clip when it has sound and a schedule follows it."""
    if cfg.audio:
        return cfg.audio
    if cfg.mode == "video" and cfg.input and follows_sound(cfg):
        from ..video import probe

        if probe(cfg.input, cfg.fps).has_audio:
            return cfg.input
    return None


def listen(cfg: Config) -> Config:
    """Analyse the render's sound and make its signals the schedules'; returns the config with a zoom's
    frames set to the song's length when they were not given."""
    schedule.use_signals(None)
    path = source(cfg) if cfg.mode in ("zoom", "video") else None
    if path is None:
        return cfg
    signals = audio.analyse(path)
    if cfg.mode == "zoom":
        fps = cfg.fps
        if cfg.frames is None:
            frames = max(1, math.ceil(signals.duration * fps - 1e-6))
            cfg = replace(cfg, frames=frames)
    else:
        from ..video import probe

        fps = float(probe(cfg.input, cfg.fps).rate)
    if not (math.isfinite(fps) and fps > 0):
        raise DreamvidError(f"fps={fps} must be a positive number")
    schedule.use_signals(signals.at_frames(fps, int(math.ceil(signals.duration * fps - 1e-6)) or 1))
    return cfg
