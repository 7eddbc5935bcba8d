"""The settings of a render checked before any work: every declared rule (`dreamvid.settings`), then
what no single setting can say (a still output with frames=5, a video as a zoom's input, per-layer lists
that do not fit the layers); and the warnings for settings this mode ignores."""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Optional, Sequence

from .. import schedule, settings
from ..config import MODES, Config
from ..errors import DreamvidError
from ..video import CLIP_EXTS, output_kind
from .outputs import guide_pictures, refuse_input_as_output

DEFAULT_FRAMES = 36  # a zoom's length when frames is not given (a still output: 1)


def still_output(cfg: Config) -> bool:
    """Whether the output is one picture (.png, .jpg, .webp) rather than an animation."""
    return cfg.mode != "neuron" and bool(cfg.output) and output_kind(cfg.output) == "image"


def with_frames(cfg: Config) -> Config:
    """frames as the render makes them: as given, else one for a still output and DEFAULT_FRAMES otherwise."""
    if cfg.frames is not None:
        return cfg
    return replace(cfg, frames=1 if cfg.mode in MODES and still_output(cfg) else DEFAULT_FRAMES)


# A frame larger than this, dreamed on a CPU at the input's own size, takes minutes: say how to dream smaller.
CPU_LARGE_PIXELS = 1_000_000


CPU_DEFAULT_PIXELS = 384 * 216  # the built-in picture's size on a CPU


def warn_if_slow(cfg: Config, width: int, height: int, device_type: str) -> None:
    """A warning, with the fix, when the input's own size (no width/height given) is slow to dream on a CPU."""
    if cfg.width is None and cfg.height is None and device_type == "cpu" and width * height > CPU_LARGE_PIXELS:
        warnings.warn(f"dreaming at the input's own size, {width}x{height} ({width * height / 1e6:.1f} MP), on the "
                      f"CPU: each frame takes about {width * height / CPU_DEFAULT_PIXELS:.0f}x as long as at the "
                      f"default 384x216; width=1024 (or smaller) dreams faster", stacklevel=2)


def is_clip(path: Optional[str]) -> bool:
    """Whether `path` names a video file by its extension."""
    return bool(path) and os.path.splitext(path)[1].lower() in CLIP_EXTS  # type: ignore[arg-type]


def check(cfg: Config) -> None:
    """Reject impossible settings up front, each with the fix in the message."""
    settings.check(cfg, cfg.frames, cfg.fps)
    refuse_input_as_output(cfg, cfg.output)
    if still_output(cfg):
        if cfg.mode == "video":
            raise DreamvidError(f"mode=video dreams a clip into a video: output={cfg.output} is one picture; "
                                f"use .mp4, .gif or a folder for PNG frames")
        if cfg.frames != 1:
            raise DreamvidError(f"output={cfg.output} is one picture, but frames is {cfg.frames}: set frames=1 "
                                f"(or leave it unset) for a still, or write .mp4, .gif or a folder for an animation")
    if cfg.mode == "zoom" and is_clip(cfg.input):
        raise DreamvidError(f"input={cfg.input} is a video: mode=zoom starts from one picture; "
                            f"mode=video dreams a clip")
    for guide in guide_pictures(cfg):
        if is_clip(guide):
            raise DreamvidError(f"dream.guide={guide} is a video: the guide is one picture (one of its frames: "
                                f"ffmpeg -i {guide} -frames:v 1 guide.png)")
    if cfg.segments == "auto" and cfg.mode != "video":
        raise DreamvidError("segments=auto splits a clip: it needs mode=video")
    if cfg.first_frame and cfg.segments == "auto":
        raise DreamvidError("segments=auto dreams a whole clip: leave first_frame at 0, or cut the clip first "
                            "(ffmpeg -ss SECONDS -i clip.mp4 -c copy part.mp4)")
    if cfg.max_frames is not None and cfg.mode != "video":  # a warning: a sweep over modes may share it
        warnings.warn(f"max_frames shortens a clip (mode=video) and is ignored in mode={cfg.mode}, which makes "
                      f"frames={cfg.frames}: set frames= instead", stacklevel=2)
    if cfg.mode != "neuron":
        for side in ("width", "height"):
            v = getattr(cfg, side)
            if v is not None and v < cfg.model.min_size:
                raise DreamvidError(f"{side}={v} is smaller than the {cfg.model.min_size} px this model needs: "
                                    f"use at least {cfg.model.min_size}")
    for weight in cfg.dream.layer_weights:  # a list of schedules: evaluated at every frame too
        schedule.validate(weight, "dream.layer_weights", cfg.frames, cfg.fps)
    if cfg.mode != "neuron":
        check_per_layer_lists(cfg)


def check_per_layer_lists(cfg: Config) -> None:
    """dream.layer_weights and dream.channels give one entry per layer at every keyframe of dream.layers."""
    steps = schedule.parse_steps(list(cfg.dream.layers) or list(cfg.model.layers), "dream.layers")
    for t in steps.keyframes:
        layers = steps(t)
        for name, values, what in (("dream.layer_weights", cfg.dream.layer_weights, "weights"),
                                   ("dream.channels", cfg.dream.channels, "lists")):
            if values and len(values) != len(layers):
                scheduled = len(steps.keyframes) > 1
                at = f" from frame {t}" if scheduled else ""
                why = " (a layer schedule whose number of layers changes takes none)" if scheduled else ""
                raise DreamvidError(f"{name} has {len(values)} {what} for the {len(layers)} layers{at} "
                                    f"({'+'.join(layers)}): give one per layer{why}")


def warn_about_settings(cfg: Config, typed: Sequence[str]) -> None:
    """Warnings about `typed`, the settings the command line named: each one this mode does not use (a
    warning, not an error: a sweep over modes may share them), and a folder of frames' rate left unset."""
    folder = bool(cfg.input) and os.path.isdir(os.path.expanduser(cfg.input))  # type: ignore[arg-type]
    if cfg.mode == "video" and folder and "fps" not in typed:
        warnings.warn(f"a folder of frames has no frame rate of its own: it plays at fps={cfg.fps:g}; set fps= "
                      f"to its rate (fps=24, say)", stacklevel=2)
    if "frames" in typed and cfg.frames is not None and cfg.mode in ("video", "neuron"):
        fix = (f"set max_frames={cfg.frames} to dream only its first {cfg.frames}" if cfg.mode == "video"
               else "its length is neuron.steps (neuron.record_every=N records a frame every N steps)")
        what = "every frame of the clip" if cfg.mode == "video" else "one picture per channel"
        warnings.warn(f"frames={cfg.frames} is a zoom's length and is ignored in mode={cfg.mode}, which dreams "
                      f"{what}: {fix}", stacklevel=2)
    if "fps" in typed and cfg.mode == "video" and cfg.input and os.path.isfile(os.path.expanduser(cfg.input)):
        warnings.warn(f"fps={cfg.fps:g} is ignored in mode=video: the dream keeps the clip's own frame rate and "
                      f"length, with its sound (fps is the rate of a folder of frames)", stacklevel=2)
    special = {"frames", "fps", "max_frames"}  # said above (or in check), with the setting that does what was meant
    for line in settings.ignored(cfg, [k for k in typed if k not in special]):
        warnings.warn(line, stacklevel=2)
