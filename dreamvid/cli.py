"""The command line: Hydra composes the config, which is turned into the typed Config once."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import warnings
from typing import List, Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from . import sweep
from .config import Config, register
from .model import MODELS, DreamvidError

register()

USAGE_LAYERS = "usage: dreamvid layers [MODEL]   (models: " + ", ".join(MODELS) + ")"


def _verbose() -> bool:
    return bool(os.environ.get("HYDRA_FULL_ERROR") or os.environ.get("DREAMVID_DEBUG"))


def _fail(message: str, code: int = 2) -> None:
    print(f"dreamvid: {'error: ' if code != 130 else ''}{message}", file=sys.stderr)
    sys.exit(code)


def to_config(dcfg: DictConfig) -> Config:
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    return cfg


def _sweeping() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


INTERRUPTED = "interrupted; the frames finished so far are kept: the same command resumes"
# What resume= takes from its own command line; everything else comes from the interrupted render.
RESUME_OWN = ("resume", "progress", "device")


def _check_resume_overrides() -> None:
    """resume= continues a render with its saved settings: refuse others rather than ignore them."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    keys = [o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.task]
    others = [k for k in keys if k not in RESUME_OWN]
    if others:
        raise DreamvidError(f"resume= continues a render with its own saved settings; {', '.join(others)} "
                            f"would be ignored: drop {'them' if len(others) > 1 else 'it'}, or start a new "
                            f"render (the same command without resume=)")


@hydra.main(version_base=None, config_path="conf", config_name="config")
def _hydra_main(dcfg: DictConfig) -> Optional[str]:
    from . import pipeline

    try:
        cfg = to_config(dcfg)
        if cfg.resume:
            _check_resume_overrides()
        out = pipeline.run(cfg)
    except DreamvidError as e:
        code = getattr(e, "exit_code", 2)
        if _sweeping() and code != 130:  # in a sweep one bad job is reported and the others go on
            sweep.job_failed(e, verbose=_verbose())
            return None
        if _verbose():
            raise
        print(f"dreamvid: {'error: ' if code == 2 else ''}{e}", file=sys.stderr)
        sys.exit(code)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except Exception as e:  # noqa: BLE001 - only in a sweep: a crash in one job must not stop the others
        if not _sweeping():
            raise
        sweep.job_failed(e, verbose=_verbose())
        return None
    print(f"dreamvid: wrote {out}")
    return out


# Config groups: `model=vgg16` picks conf/model/vgg16.yaml (the rest of the command line sets keys).
GROUPS = ("model", "flow", "preset", "debug")
SIMPLE_VALUE = re.compile(r"[\w.+-]*")  # a plain scalar: Hydra and YAML read it alike


def _setting_names(schema=Config, prefix: str = "") -> List[str]:
    names = []
    for f in dataclasses.fields(schema):
        names.append(prefix + f.name)
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            names += _setting_names(f.default_factory, prefix + f.name + ".")
    return names


def _group_options(group: str) -> List[str]:
    folder = os.path.join(os.path.dirname(__file__), "conf", group)
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".yaml"))


def override_error(argv: List[str]) -> Optional[str]:
    """One line saying what is wrong with the first bad `key=value` of a command line, before Hydra
    (whose own messages run to several lines): a misspelt key, a group option that does not exist, a
    plain value of the wrong type. None when every override is one dreamvid knows."""
    names = _setting_names()
    own_configs = any(a.startswith(("--config-dir", "-cd", "--config-path", "-cp")) for a in argv)
    # (segments=auto's own sweep gives its segment jobs one output: each writes its segment beside it)
    sweeping = any(a in ("-m", "--multirun") for a in argv) and not any(a.startswith("segment=") for a in argv)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if key.startswith(("+", "~", "hydra")) or "@" in key:
            continue  # Hydra's own settings and syntax: left to Hydra
        if key in GROUPS:
            options = _group_options(key)
            picked = [v for v in value.split(",") if v not in ("", "null")]
            wrong = [v for v in picked if v not in options]
            if wrong and not own_configs and "(" not in value:
                return f"{key}={wrong[0]} is not one of the choices: {', '.join(options)}"
            continue
        if key not in names:
            close = difflib.get_close_matches(key, names + list(GROUPS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"unknown setting {key}{hint}; the settings are listed in the README and by `dreamvid --cfg job`"
        if key == "output" and sweeping and "${" not in value and "," not in value and "(" not in value:
            return (f"in a sweep (-m) every job would write output={value}: leave output unset (each job writes "
                    f"into its own folder) or put the job's folder in it, output='${{hydra:runtime.output_dir}}/"
                    f"{os.path.basename(value.rstrip('/')) or 'frames'}'")
        if SIMPLE_VALUE.fullmatch(value):
            schema = OmegaConf.structured(Config)
            if OmegaConf.is_list(OmegaConf.select(schema, key)):
                return f"{key} is a list: write {key}=[{value}]"
            try:
                OmegaConf.merge(schema, OmegaConf.from_dotlist([f"{key}={value}"]))
            except Exception as e:  # noqa: BLE001 - OmegaConf's ValidationError and kin
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                return f"{key}={value}: {why}"
    return None


def list_layers_command(argv: List[str]) -> int:
    from .model import list_layers

    name = argv[0] if argv else "lite0"
    if name in ("-h", "--help"):
        print(USAGE_LAYERS)
        return 0
    try:
        rows = list_layers(name)
    except DreamvidError as e:
        print(f"dreamvid: error: {e}", file=sys.stderr)
        return 2
    try:
        print(f"{'layer':<16} channels")
        for layer, channels in rows:
            print(f"{layer:<16} {channels}")
        sys.stdout.flush()
    except BrokenPipeError:  # `dreamvid layers | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "layers":
        sys.exit(list_layers_command(sys.argv[2:]))
    warnings.formatwarning = lambda msg, cat, *a, **k: f"dreamvid: warning: {msg}\n"
    problem = override_error(sys.argv[1:])
    if problem:
        _fail(problem)
    try:
        _hydra_main()
    except KeyboardInterrupt:  # while Hydra starts, before a render could begin
        _fail("interrupted", 130)
    if sweep.failures():  # a sweep that went on past failed jobs still says so in its exit status
        sys.exit(1)
