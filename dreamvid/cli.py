"""The command line: Hydra composes the config, which is turned into the typed Config once."""
from __future__ import annotations

import os
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
    print(f"dreamvid: error: {message}", file=sys.stderr)
    sys.exit(code)


def to_config(dcfg: DictConfig) -> Config:
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    return cfg


def _sweeping() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
        _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - only in a sweep: a crash in one job must not stop the others
        if not _sweeping():
            raise
        sweep.job_failed(e, verbose=_verbose())
        return None
    print(f"dreamvid: wrote {out}")
    return out


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
    _hydra_main()
    if sweep.failures():  # a sweep that went on past failed jobs still says so in its exit status
        sys.exit(1)
