"""The command line: Hydra composes the config, which is turned into the typed Config once."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import time
import warnings
from typing import Dict, List, Optional, Tuple

import hydra
from omegaconf import DictConfig, OmegaConf

from .. import stopping, sweep
from . import callbacks
from ..config import GROUPS, Config
from ..errors import DreamvidError
from ..model import MODELS



def register() -> None:
    """Register the schemas so that conf/'s YAML files can extend them."""
    from hydra.core.config_store import ConfigStore

    from ..config import FlowConfig, ModelConfig

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="flow", name="base_flow", node=FlowConfig)


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


class RunLog:
    """The run folder's `dreamvid.log` (a render without output=, a sweep's job): the warnings as they are
    said, and a closing line (what was written, or why not, and how long it took). Nothing for a render
    told where to write, which leaves no run folder."""

    def __init__(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        self.path: Optional[str] = None
        self.started = time.time()
        if HydraConfig.initialized():
            hc = HydraConfig.get()
            if hc.output_subdir is not None:  # Hydra keeps its record there: it is a run folder
                self.path = os.path.join(hc.runtime.output_dir, f"{hc.job.name}.log")
        self._shown = warnings.showwarning

    def line(self, text: str) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")
        except OSError:
            pass

    def __enter__(self) -> "RunLog":
        def show(message, category, filename, lineno, file=None, line=None):
            self.line(f"warning: {message}")
            self._shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return self

    def __exit__(self, kind, error, tb) -> None:
        warnings.showwarning = self._shown
        took = f"{time.time() - self.started:.1f} s"
        if error is None:
            return
        if isinstance(error, SystemExit) and error.code in (0, None):
            return
        why = getattr(self, "failure", None) or (str(error) if not isinstance(error, SystemExit) else "")
        self.line(f"stopped after {took}: exit status "
                  f"{error.code if isinstance(error, SystemExit) else type(error).__name__}{': ' + why if why else ''}")

    def finished(self, out: str) -> None:
        self.line(f"wrote {out} in {time.time() - self.started:.1f} s")


@hydra.main(version_base=None, config_path="pkg://dreamvid.conf", config_name="config")
def _hydra_main(dcfg: DictConfig) -> Optional[str]:
    with RunLog() as log:
        out = _job(dcfg, log)
        if out is not None:
            log.finished(out)
        return out


def _job(dcfg: DictConfig, log: "RunLog") -> Optional[str]:
    from .. import pipeline

    try:
        cfg = to_config(dcfg)
        if cfg.resume:
            _check_resume_overrides()
        from .launch import context

        out = pipeline.run(cfg, _typed_keys(), context())  # typed: not a preset's frames (debug=tiny sets them)
    except DreamvidError as e:
        code = e.exit_code
        if _sweeping() and code <= 128:  # in a sweep one bad job is reported and the others go on; a stop stops
            log.line(f"error: {e}")
            callbacks.job_failed(e, verbose=_verbose())
            return None
        if _verbose():
            raise
        log.failure = str(e)
        _fail(str(e), code)
    except KeyboardInterrupt as e:  # Ctrl-C, or a stop signal (stopping.Stopped), outside a render's frames
        _fail(INTERRUPTED, getattr(e, "exit_code", 130))
    except Exception as e:  # noqa: BLE001 - only in a sweep: a crash in one job must not stop the others
        if not _sweeping():
            raise
        log.line(f"error: {type(e).__name__}: {e}")
        callbacks.job_failed(e, verbose=_verbose())
        return None
    print(f"dreamvid: wrote {out}")
    return out


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


def config_folders() -> List[str]:
    """Where config groups' options are found, in Hydra's order: dreamvid's own, then one's own presets
    (the search path in conf/config.yaml: ./conf where dreamvid runs, ~/.config/dreamvid)."""
    return [os.path.join(os.path.dirname(os.path.dirname(__file__)), "conf"), os.path.abspath("conf"),
            os.path.join(os.path.expanduser("~"), ".config", "dreamvid")]


def own_config_overrides(argv: List[str]) -> List[str]:
    """argv with one's own config folders that exist (`config_folders` after dreamvid's) on Hydra's search
    path, unless the command line sets the search path itself."""
    if any(k.lstrip("+~").startswith("hydra.searchpath") for k, _ in _overrides(argv)):
        return list(argv)
    ours = os.path.realpath(config_folders()[0])
    own = [f for f in config_folders()[1:] if os.path.isdir(f) and os.path.realpath(f) != ours]
    if not own:
        return list(argv)
    extra = "hydra.searchpath=[" + ",".join(f"file://{f}" for f in own) + "]"
    words = _words(argv)
    at = argv.index(words[0]) if words else len(argv)  # beside the others: Hydra reads them as one run of words
    return argv[:at] + [extra] + argv[at:]


def _group_options(group: str, own: bool = True) -> List[str]:
    """A config group's options (own: with those of one's own folders)."""
    found = set()
    for root in config_folders()[: None if own else 1]:
        folder = os.path.join(root, group)
        if os.path.isdir(folder):
            found.update(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".yaml"))
    return sorted(found)


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
    from ..model import list_layers

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


USAGE = """dreamvid: DeepDream zoom animations, dream videos that stick to the scene, stills and neuron pictures.

Usage: dreamvid [key=value ...]     every setting below is a key=value on the command line

  dreamvid                                                zoom into the built-in clouds (outputs/DATE/TIME/)
  dreamvid input=photo.jpg output=dream.png               one photo, dreamed (.png, .jpg, .webp)
  dreamvid input=photo.jpg frames=120 output=zoom.mp4     a zoom into a photo (.mp4, .gif, folder/)
  dreamvid mode=video input=clip.mp4 output=dream.mp4     a dream video, sound kept
  dreamvid mode=video input=shots/ fps=24                 a folder of frames, as a clip
  dreamvid mode=neuron channels=[0,5,10-13]               what channels of a layer respond to
  dreamvid -m dream.octaves=3,4 seed=1,2                  a sweep, with a gallery of the results
  dreamvid resume=zoom.mp4                                finish an interrupted render
  dreamvid layers lite0                                   a model's layers and their channel counts
  dreamvid --cfg job [key=value ...]                      the settings a command line makes
  dreamvid --version                                      which dreamvid this is"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("dreamvid")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def docs_folder() -> Optional[str]:
    """Where this installation's Markdown docs are: inside the package (a wheel), or beside it (a checkout)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (os.path.join(here, "docs"), os.path.join(os.path.dirname(here), "docs")):
        if os.path.isfile(os.path.join(folder, "video.md")):
            return folder
    return None


def help_text() -> str:
    """dreamvid --help: usage, the config groups and their options, every setting with its default, the
    modes that use it and what it does (read off the declarations), and where the docs are."""
    from ..settings import help_lines

    groups = [f"{g}: {', '.join(_group_options(g))}   ({what})" for g, what in GROUPS.items()]
    docs = docs_folder()
    where = (f"Docs (Markdown): {docs}/ zoom.md, video.md, schedules.md, neuron.md, sweeps.md, benchmarks.md, design.md"
             if docs else "Docs: README.md and docs/ of the dreamvid source")
    return "\n".join([USAGE, "", "== Groups (group=option) ==", *groups, "",
                      "== Settings: name=default  what it does [the modes that use it] ==", *help_lines()[1:], "",
                      where, "Hydra's own flags: dreamvid --hydra-help"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "layers":
        sys.exit(list_layers_command(sys.argv[2:]))
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(help_text())
        sys.exit(0)
    if "--version" in sys.argv[1:]:
        print(f"dreamvid {version()}")
        sys.exit(0)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"dreamvid: warning: {msg}\n"
    stopping.install()  # SIGTERM and SIGHUP stop dreamvid like Ctrl-C
    problem = override_error(sys.argv[1:]) or run_folder_problem(sys.argv[1:], os.getcwd())
    if problem:
        _fail(problem)
    sys.argv[1:] = own_config_overrides(run_folder_overrides(sys.argv[1:]))
    try:
        _hydra_main()
    except KeyboardInterrupt as e:  # while Hydra starts, before a render could begin
        _fail("interrupted", getattr(e, "exit_code", 130))
    if sweep.failures():  # a sweep that went on past failed jobs still says so in its exit status
        sys.exit(1)
