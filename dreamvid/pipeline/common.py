"""What every mode shares: checking settings, output paths, saving the config, progress."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from ..config import MODES, Config
from ..model import DreamvidError
from .. import schedule

# Settings that may be schedules, by section; checked over every frame before a render starts.
SCHEDULED = {
    "dream": ("octaves", "octave_scale", "iterations", "step", "jitter", "guide_weight"),
    "motion": ("zoom", "angle", "tx", "ty", "cx", "cy"),
    "coherence": ("blend", "iterations", "octaves", "color_match"),
}


def check(cfg: Config) -> None:
    """Reject impossible settings up front, each with the fix in the message."""
    if cfg.mode not in MODES:
        raise DreamvidError(f"unknown mode {cfg.mode!r}: use one of {', '.join(MODES)}")
    if cfg.frames < 1:
        raise DreamvidError(f"frames must be at least 1, got {cfg.frames}")
    if not cfg.fps > 0:
        raise DreamvidError(f"fps must be positive, got {cfg.fps}")
    for side in ("width", "height"):
        v = getattr(cfg, side)
        if v is not None and v < 1:
            raise DreamvidError(f"{side} must be a positive number of pixels, got {v}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise DreamvidError(f"max_frames must be at least 1, got {cfg.max_frames}")
    for section, names in SCHEDULED.items():
        for name in names:
            schedule.validate(getattr(getattr(cfg, section), name), f"{section}.{name}", cfg.frames, cfg.fps)


def frame_settings(section: Any, names, t: int, fps: float) -> Dict[str, float]:
    """Evaluate the (possibly scheduled) settings of a config section at frame t."""
    return {n: schedule.at(getattr(section, n), t, fps) for n in names}


def run_dir() -> str:
    """Hydra's folder for this run (each sweep job has its own), or the current folder outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.output_dir
    except Exception:  # noqa: BLE001 - not running under Hydra
        return os.getcwd()


def resolve_output(cfg: Config, default_name: str) -> str:
    out = cfg.output or os.path.join(run_dir(), default_name)
    out = os.path.abspath(os.path.expanduser(out))
    if cfg.input and os.path.exists(cfg.input) and os.path.abspath(cfg.input) == out:
        raise DreamvidError(f"output would overwrite the input {cfg.input}: choose another output=")
    return out


def config_dict(cfg: Config) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def save_config(cfg: Config, output: str) -> str:
    """Write the fully resolved config beside an output: `dream.mp4` -> `dream.mp4.yaml`."""
    path = output.rstrip("/") + ".yaml"
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    os.replace(tmp, path)
    return path


def progress(total: Optional[int], desc: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, initial=initial,
                dynamic_ncols=True, leave=True)
