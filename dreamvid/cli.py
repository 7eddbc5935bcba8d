"""The command line: Hydra composes the config, which is turned into the typed Config once."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import warnings
from typing import Dict, List, Optional, Tuple

import hydra
from omegaconf import DictConfig, OmegaConf

from . import stopping, sweep
from .config import Config, register
from .errors import DreamvidError
from .model import MODELS

register()

USAGE_LAYERS = "usage: dreamvid layers [MODEL]   (models: " + ", ".join(MODELS) + ")"


def _verbose() -> bool:
    return bool(os.environ.get("HYDRA_FULL_ERROR") or os.environ.get("DREAMVID_DEBUG"))


def _fail(message: str, code: int = 2) -> None:
    stopping.say(f"dreamvid: {'error: ' if code <= 128 else ''}{message}")  # a signal's stop is not an error
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


def _typed_keys() -> List[str]:
    """The settings named on this job's command line (a sweep's job: with its own values)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.task]


def _check_resume_overrides() -> None:
    """resume= continues a render with its saved settings: refuse others rather than ignore them."""
    others = [k for k in _typed_keys() if k not in RESUME_OWN]
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
        out = pipeline.run(cfg, _typed_keys())  # typed: not a preset's frames (debug=tiny sets them)
    except DreamvidError as e:
        code = e.exit_code
        if _sweeping() and code <= 128:  # in a sweep one bad job is reported and the others go on; a stop stops
            sweep.job_failed(e, verbose=_verbose())
            return None
        if _verbose():
            raise
        _fail(str(e), code)
    except KeyboardInterrupt as e:  # Ctrl-C, or a stop signal (stopping.Stopped), outside a render's frames
        _fail(INTERRUPTED, getattr(e, "exit_code", 130))
    except Exception as e:  # noqa: BLE001 - only in a sweep: a crash in one job must not stop the others
        if not _sweeping():
            raise
        sweep.job_failed(e, verbose=_verbose())
        return None
    print(f"dreamvid: wrote {out}")
    return out


# Config groups: `model=vgg16` picks conf/model/vgg16.yaml (the rest of the command line sets keys).
GROUPS = ("model", "flow", "preset", "debug")
# dreamvid's launchers (conf/hydra/launcher/): the Hydra plugin each needs, and the extra that installs it
LAUNCHERS = {"parallel": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher", "sweep"),
             "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "sweep"),
             "ray_cluster": ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher", "ray")}
SIMPLE_VALUE = re.compile(r"[\w.+-]*")  # a plain scalar: Hydra and YAML read it alike
# Hydra's flags whose argument is the next word (`-sc install=bash` is not a setting)
FLAGS_WITH_ARGUMENT = ("-sc", "--shell-completion", "-cd", "--config-dir", "-cp", "--config-path", "-cn",
                       "--config-name", "--cfg", "-c", "-p", "--package", "--info", "-i")


def _setting_types(schema=Config, prefix: str = "") -> Dict[str, str]:
    """Every setting's dotted name -> its annotation as written in config.py ("List[str]", "Any", ...)."""
    types = {}
    for f in dataclasses.fields(schema):
        types[prefix + f.name] = str(f.type)
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            types.update(_setting_types(f.default_factory, prefix + f.name + "."))
    return types


def _group_options(group: str) -> List[str]:
    folder = os.path.join(os.path.dirname(__file__), "conf", group)
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".yaml"))


def _sweeps(value: str) -> bool:
    """A Hydra sweep value: a comma outside brackets and quotes, or range/choice/glob/interval."""
    plain = re.sub(r"\[[^\]]*\]|'[^']*'|\"[^\"]*\"", "", value)
    return "," in plain or plain.startswith(("range(", "choice(", "glob(", "interval("))


def _words(argv: List[str]) -> List[str]:
    """The overrides of a command line: its words that are not flags, nor the arguments flags take."""
    words, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in FLAGS_WITH_ARGUMENT:
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def _overrides(argv: List[str]) -> List[Tuple[str, str]]:
    """(key, value) of each `key=value` override."""
    pairs = []
    for arg in _words(argv):
        if "=" in arg:
            key, value = arg.split("=", 1)
            pairs.append((key, value))
    return pairs


def override_error(argv: List[str]) -> Optional[str]:
    """One line saying what is wrong with the first bad `key=value` of a command line, before Hydra
    (whose own messages run to several lines): a misspelt key, a group option that does not exist, a
    plain value of the wrong type. None when every override is one dreamvid knows."""
    types = _setting_types()
    schema = None  # the typed config, built once if a plain value needs checking
    pairs = _overrides(argv)
    # The user's own config folders may add groups, options and keys: those are left to Hydra.
    own_configs = any(a.startswith(("--config-dir", "-cd", "--config-path", "-cp")) for a in argv) or \
        any(k.lstrip("+~").startswith("hydra.searchpath") for k, _ in pairs)
    # Several jobs: a swept value (segments=auto's own sweep gives its segment jobs one output, each
    # writing its segment beside it).
    several = any(a in ("-m", "--multirun") for a in argv) and any(_sweeps(v) for k, v in pairs) and \
        not any(k == "segment" for k, _ in pairs)
    unreadable = _unreadable(argv)
    if unreadable:
        return unreadable
    for key, value in pairs:
        if key.lstrip("+~") == "hydra/launcher" and value in LAUNCHERS:
            missing = _missing_plugin(value)
            if missing:
                return missing
        if key.startswith(("+", "~", "hydra")) or "@" in key:
            continue  # Hydra's own settings and syntax: left to Hydra
        if key in GROUPS:
            options = _group_options(key)
            wrong = [v for v in value.split(",") if v not in ("", "null") and v not in options]
            if wrong and not own_configs and "(" not in value:
                return f"{key}={wrong[0]} is not one of the choices: {', '.join(options)}"
            continue
        if key not in types:
            if own_configs:
                continue
            close = difflib.get_close_matches(key, list(types) + list(GROUPS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"unknown setting {key}{hint}; the settings are listed in the README and by `dreamvid --cfg job`"
        if key == "output" and several and "${" not in value and not _sweeps(value):
            return (f"in a sweep (-m) every job would write output={value}: leave output unset (each job writes "
                    f"into its own folder) or put the job's folder in it, output='${{hydra:runtime.output_dir}}/"
                    f"{os.path.basename(value.rstrip('/')) or 'frames'}'")
        if SIMPLE_VALUE.fullmatch(value):
            if types[key].startswith("List"):
                return f"{key} is a list: write {key}=[{value}]"
            if schema is None:
                schema = OmegaConf.structured(Config)
            try:
                OmegaConf.merge(schema, OmegaConf.from_dotlist([f"{key}={value}"]))
            except Exception as e:  # noqa: BLE001 - OmegaConf's ValidationError and kin
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                return f"{key}={value}: {why}"
    return None


def _unreadable(argv: List[str]) -> Optional[str]:
    """One line for the first override Hydra's grammar cannot read (an unclosed bracket or quote), whose
    own message runs to three lines and a link."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    words = _words(argv)
    if not words:
        return None
    parser = OverridesParser.create()
    for word in words:
        try:
            parser.parse_overrides([word])
        except OverrideParseException as e:
            lines = [ln.strip() for ln in str(e).splitlines()
                     if ln.strip() and not ln.startswith(("See https://", "Error parsing override")) and
                     set(ln.strip()) != {"^"}]
            why = lines[0].split(": ", 1)[-1] if lines else "not a key=value"
            return (f"cannot read {word} ({why}): a list is written [a,b], and a value with spaces, brackets or "
                    f"quotes goes in quotes: key='value'")
    return None


def _missing_plugin(launcher: str) -> Optional[str]:
    """What to install when the Hydra plugin behind one of dreamvid's launchers is not there."""
    import importlib.util

    module, package, extra = LAUNCHERS[launcher]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (f'hydra/launcher={launcher} needs the {package} package: pip install {package} (or, in the dreamvid '
            f'folder, pip install ".[{extra}]")')


# A single render told where to write leaves nothing else behind: no run folder, no .hydra/, no log.
NO_RUN_FOLDER = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none"]


def run_folder_overrides(argv: List[str]) -> List[str]:
    """argv with overrides that keep Hydra from making outputs/DATE/TIME/ for a render whose output is
    given (output= or resume=), placed beside that override (Hydra's parser takes the overrides as one
    run of words); argv as it is for a sweep, whose job folders are its record, or where the command
    line sets the run folder or Hydra's logging itself."""
    pairs = [(k.lstrip("+~"), v) for k, v in _overrides(argv)]
    if any(a in ("-m", "--multirun") for a in argv) or any(k == "hydra.mode" and v.upper() == "MULTIRUN"
                                                            for k, v in pairs):
        return list(argv)
    if any(k.startswith(("hydra.run", "hydra.output_subdir", "hydra/job_logging", "hydra.job_logging")) for k, _ in pairs):
        return list(argv)
    for i, arg in enumerate(argv):
        key, _, value = arg.partition("=")
        if key in ("output", "resume") and value not in ("", "null") and not arg.startswith("-"):
            return argv[: i + 1] + NO_RUN_FOLDER + argv[i + 1:]
    return list(argv)


# Flags with which Hydra runs no job: it writes no run folder
NO_JOB_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc",
                "--shell-completion")


def run_folder_problem(argv: List[str], cwd: str) -> Optional[str]:
    """One line when Hydra would have to make its run or sweep folder (outputs/, multirun/) in a folder it
    cannot write (Hydra's own error is a traceback); None otherwise."""
    if any(a in NO_JOB_FLAGS for a in argv):
        return None
    keys = {k.lstrip("+~") for k, v in _overrides(argv) if v not in ("", "null")}
    sweep = any(a in ("-m", "--multirun") for a in argv)
    if sweep and any(k.startswith("hydra.sweep.dir") for k in keys):
        return None
    if not sweep and (keys & {"output", "resume"} or any(k.startswith("hydra.run.dir") for k in keys)):
        return None
    if os.access(cwd, os.W_OK):
        return None
    where, setting = ("multirun/DATE/TIME/", "hydra.sweep.dir=PATH") if sweep else ("outputs/DATE/TIME/", "output=PATH")
    return (f"the current folder {cwd} is not writable, and without {setting.split('=')[0]}= dreamvid writes into "
            f"{where} in it: pass {setting}, or run dreamvid from a folder you can write to")


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
    stopping.install()  # SIGTERM and SIGHUP stop dreamvid like Ctrl-C
    problem = override_error(sys.argv[1:]) or run_folder_problem(sys.argv[1:], os.getcwd())
    if problem:
        _fail(problem)
    sys.argv[1:] = run_folder_overrides(sys.argv[1:])
    try:
        _hydra_main()
    except KeyboardInterrupt as e:  # while Hydra starts, before a render could begin
        _fail("interrupted", getattr(e, "exit_code", 130))
    if sweep.failures():  # a sweep that went on past failed jobs still says so in its exit status
        sys.exit(1)
