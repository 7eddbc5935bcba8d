"""Where a render's files go and what is written beside them: the output's path, its settings file
(claimed before the render, placed without replacing anybody's), the settings as data, resume=."""
from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import replace
from typing import Any, Dict, Optional, Tuple

import yaml

from .. import files, schedule
from ..checkpoint import find_state, saved_config
from ..config import Config, from_dict
from ..errors import DreamvidError
from ..model import RANDOM
from ..segments import folder as segments_folder

def resolve_output(cfg: Config, default_name: str, folder: str) -> str:
    """The output's absolute path (unset: `default_name` in the run's folder); a trailing slash (a folder
    of frames, whatever its name) is kept."""
    out = cfg.output or os.path.join(folder, default_name)
    folder = out.endswith(("/", os.sep))
    out = os.path.abspath(os.path.expanduser(out)) + (os.sep if folder else "")
    refuse_input_as_output(cfg, out)
    return out


def guide_pictures(cfg: Config) -> Tuple[str, ...]:
    """dream.guide's pictures: one, or those of its keyframes."""
    return schedule.parse_pictures(cfg.dream.guide).pictures if cfg.dream.guide else ()


def read_files(cfg: Config) -> Tuple[Optional[str], ...]:
    """Every file a render reads besides the model: what identifies it for resume, and what no output may replace."""
    return (cfg.input, *guide_pictures(cfg), cfg.color.reference, cfg.audio, cfg.dream.mask)


def refuse_input_as_output(cfg: Config, out: Optional[str]) -> None:
    """No output may replace the files a render reads: its input, guide pictures, reference, song, mask."""
    names = ["input"] + ["guide image"] * len(guide_pictures(cfg)) + ["colour reference", "song", "mask"]
    for what, source in zip(names, read_files(cfg)):
        if source and out and os.path.exists(source) and \
                os.path.realpath(source) == os.path.realpath(os.path.expanduser(out.rstrip("/" + os.sep))):
            raise DreamvidError(f"output would overwrite the {what} {source}: choose another output=")


def absolute_inputs(cfg: Config) -> Config:
    """The config with its existing input files as absolute paths, as saved for resume=: a render
    resumed from another folder finds them. A path that does not exist stays as typed, for its error."""
    def absolute(path: Optional[str]) -> Optional[str]:
        full = os.path.expanduser(path) if path else path
        return os.path.abspath(full) if full and os.path.exists(full) else path

    weights = cfg.model.weights
    return replace(cfg, input=absolute(cfg.input), audio=absolute(cfg.audio),
                   dream=replace(cfg.dream, mask=absolute(cfg.dream.mask), guide=cfg.dream.guide and
                                 schedule.parse_pictures(cfg.dream.guide).with_paths(absolute)),
                   color=replace(cfg.color, reference=absolute(cfg.color.reference)),
                   model=replace(cfg.model, weights=weights if weights == RANDOM else absolute(weights)))


def config_dict(cfg: Config) -> Dict[str, Any]:
    """The settings as plain data (what is saved and embedded)."""
    return dataclasses.asdict(cfg)


# The first line of every settings file dreamvid writes: how it knows one as its own
CONFIG_HEADER = "# dreamvid settings"


CONFIG_KEYS = {"mode", "model", "dream", "motion", "speed"}  # an earlier dreamvid's settings file, without the line


def config_path(output: str) -> str:
    """Where an output's settings go: `dream.mp4` -> `dream.mp4.yaml`."""
    return output.rstrip("/").rstrip(os.sep) + ".yaml"


def _written_by_dreamvid(path: str) -> bool:
    try:
        if os.path.getsize(path) > 1 << 20:
            return False
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return False
    if text.startswith(CONFIG_HEADER):
        return True
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and CONFIG_KEYS <= set(data)


def claim_config_file(output: str, overwrite: bool) -> Optional[files.Identity]:
    """What may be replaced at the output's settings file (`config_path`) when the render ends: a settings
    file dreamvid wrote, anything with overwrite=true, nothing when it is not there. A file of the user's
    is refused in one line, before any work."""
    path = config_path(output)
    found = files.identity(path)
    if found is None:
        return None
    if found.folder:
        raise DreamvidError(f"{path} is a folder, and dreamvid writes the settings of {os.path.basename(output)} "
                            f"to a file of that name: move it away, or choose another output=")
    if overwrite or _written_by_dreamvid(path):
        return found
    raise DreamvidError(f"{path} exists and dreamvid did not write it, but it writes the settings of "
                        f"{os.path.basename(output.rstrip('/'))} there: move it away, choose another output=, or "
                        f"pass overwrite=true to replace it")


def save_config(cfg: Config, output: str, allowed: Optional[files.Identity] = None,
                scratch: Optional[str] = None) -> str:
    """Write the fully resolved config beside an output: `dream.mp4` -> `dream.mp4.yaml`, replacing only
    `allowed` (`claim_config_file`); returns where it went (`files.place`). `scratch`: a folder of
    dreamvid's own for the temporary file."""
    path = config_path(output)
    if scratch is not None:
        tmp = os.path.join(scratch, "config.partial")
    else:
        tmp = files.temp_file(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{CONFIG_HEADER} of {os.path.basename(output.rstrip('/'))}\n")
            yaml.safe_dump(config_dict(cfg), f, sort_keys=False, allow_unicode=True)
        written = files.place(tmp, path, allowed)
    except OSError as e:
        files.remove(tmp)
        raise DreamvidError(f"cannot write {path}: {e.strerror or e}") from None
    if written != path:
        warnings.warn(f"{path} appeared while dreamvid rendered and is left as it is; the settings are in "
                      f"{written}", stacklevel=2)
    return written


def resumed_config(cfg: Config) -> Config:
    """For resume=PATH: the interrupted render's own settings (progress and device from this command)."""
    target = os.path.abspath(os.path.expanduser(cfg.resume or ""))
    if os.path.isdir(segments_folder(target)) and not os.path.isdir(target + ".state"):
        raise DreamvidError(f"{target} was dreamed in segments (segments=auto): run that same command again; "
                            f"it keeps the finished segments in {segments_folder(target)} and dreams the rest")
    folder = find_state(cfg.resume or "")
    saved = saved_config(folder)
    if not saved:
        raise DreamvidError(f"{folder} has no saved settings to resume from")
    new = from_dict(saved)
    new.output = folder[: -len(".state")]
    new.resume, new.progress, new.device = None, cfg.progress, cfg.device
    return new
