"""What every mode shares: checking settings, output paths, saving the config, progress."""
from __future__ import annotations

import math
import os
import queue
import threading
import warnings
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import numpy as np
from omegaconf import OmegaConf

from ..config import MODES, Config
from ..checkpoint import Checkpoint, CheckpointWriter, find_state, render_key, saved_config
from ..model import RANDOM
from ..errors import DreamvidError
from ..segments import folder as segments_folder
from ..video import CLIP_EXTS, Encoder, TruncatedVideo, config_metadata, output_kind
from .. import files, schedule
from ..stopping import StopAfterFrame, exit_code


class Interrupted(DreamvidError):
    """The user stopped a render (a signal); what was finished is kept and can be resumed."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code

MAX_SIDE = 16384
# A render's length and rate are bounded before any work: frames are checkpointed one file each, and every
# schedule is checked at every frame before the first is dreamed.
MAX_FRAMES = 1_000_000  # 23 hours at 12 fps; a longer film is dreamed in parts (mode=video first_frame=)
MAX_FPS = 1000.0  # no screen shows more; a GIF plays at most 50
DEFAULT_FRAMES = 36  # a zoom's length when frames is not given (a still output: 1)

# Settings that may be schedules, by section; checked over every frame before a render starts.
SCHEDULED = {
    "dream": ("octaves", "octave_scale", "iterations", "step", "jitter", "guide_weight"),
    "motion": ("zoom", "angle", "tx", "ty", "cx", "cy"),
    "coherence": ("blend", "iterations", "octaves", "step", "new_step", "color_match"),
}


def still_output(cfg: Config) -> bool:
    """Whether the output is one picture (.png, .jpg, .webp) rather than an animation."""
    return cfg.mode != "neuron" and bool(cfg.output) and output_kind(cfg.output) == "image"


def with_frames(cfg: Config) -> Config:
    """frames as the render makes them: as given, else one for a still output and DEFAULT_FRAMES otherwise."""
    if cfg.frames is not None:
        return cfg
    return replace(cfg, frames=1 if cfg.mode in MODES and still_output(cfg) else DEFAULT_FRAMES)


# Settings (or sections of them) only some modes use: (those modes, what the setting is for)
USED_BY = {"motion": (("zoom",), "motion.* moves the camera of mode=zoom (a clip keeps its own motion)"),
           "coherence": (("video",), "coherence.* carries the dream from frame to frame of a clip (mode=video)"),
           "flow": (("video",), "flow.* follows the motion of a clip (mode=video)"),
           "input": (("zoom", "video"), "input is the picture or clip to dream; mode=neuron starts from noise"),
           "first_frame": (("video",), "first_frame is where a clip's dream starts (mode=video)")}


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
    for section in sorted({k.split(".", 1)[0] for k in typed} & set(USED_BY)):
        modes, what = USED_BY[section]
        if cfg.mode not in modes:
            names = ", ".join(k for k in typed if k.split(".", 1)[0] == section)
            warnings.warn(f"{names} {'is' if ',' not in names else 'are'} ignored in mode={cfg.mode}: {what}",
                          stacklevel=2)


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
    if cfg.mode not in MODES:
        raise DreamvidError(f"unknown mode {cfg.mode!r}: use one of {', '.join(MODES)}")
    refuse_input_as_output(cfg, cfg.output)
    if still_output(cfg):
        if cfg.mode == "video":
            raise DreamvidError(f"mode=video dreams a clip into a video: output={cfg.output} is one picture; "
                                f"use .mp4, .gif or a folder for PNG frames")
        if cfg.frames != 1:
            raise DreamvidError(f"output={cfg.output} is one picture, but frames is {cfg.frames}: set frames=1 "
                                f"(or leave it unset) for a still, or write .mp4, .gif or a folder for an animation")
    if cfg.frames < 1:
        raise DreamvidError(f"frames must be at least 1, got {cfg.frames}")
    if cfg.frames > MAX_FRAMES:
        raise DreamvidError(f"frames={cfg.frames} is more than the {MAX_FRAMES:,} a render may have (each frame is "
                            f"checkpointed as a file of its own): render it in parts of at most {MAX_FRAMES:,}")
    if not math.isfinite(cfg.fps) or not cfg.fps > 0:
        raise DreamvidError(f"fps must be a positive number of frames per second, got {cfg.fps}")
    if cfg.fps > MAX_FPS:
        raise DreamvidError(f"fps={cfg.fps:g} is more than the {MAX_FPS:g} frames per second dreamvid writes "
                            f"(no screen shows more): use fps=60, say")
    for side in ("width", "height"):
        v = getattr(cfg, side)
        if v is not None and v < 1:
            raise DreamvidError(f"{side} must be a positive number of pixels, got {v}")
        if v is not None and v > MAX_SIDE:
            raise DreamvidError(f"{side}={v} is too large: frames are limited to {MAX_SIDE} px a side "
                                f"(H.264's limit); dream at a smaller size and upscale")
    if cfg.segments not in ("off", "auto"):
        raise DreamvidError(f"segments must be off or auto, got {cfg.segments!r}")
    if cfg.mode == "zoom" and is_clip(cfg.input):
        raise DreamvidError(f"input={cfg.input} is a video: mode=zoom starts from one picture; "
                            f"mode=video dreams a clip")
    if is_clip(cfg.dream.guide):
        raise DreamvidError(f"dream.guide={cfg.dream.guide} is a video: the guide is one picture (one of its "
                            f"frames: ffmpeg -i {cfg.dream.guide} -frames:v 1 guide.png)")
    if cfg.segments == "auto" and cfg.mode != "video":
        raise DreamvidError("segments=auto splits a clip: it needs mode=video")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise DreamvidError(f"max_frames must be at least 1, got {cfg.max_frames}")
    if cfg.first_frame < 0:
        raise DreamvidError(f"first_frame must be 0 or more (a frame of the clip), got {cfg.first_frame}")
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
    validate_schedules(cfg, cfg.frames, cfg.fps)
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


# The ranges of scheduled settings, checked at every frame: (test, what the message says)
RANGES: Dict[str, Tuple[Callable[[float], bool], str]] = {
    "motion.zoom": (lambda v: v > 0, "must be positive (1 = no zoom, 1.25 = 25% closer per second)"),
    "dream.iterations": (lambda v: v >= 0, "must be 0 or more (0: the frames are not dreamed, only moved)"),
    "dream.octaves": (lambda v: v >= 1, "must be at least 1"),
    "dream.octave_scale": (lambda v: v > 1, "must be greater than 1"),
    "dream.step": (lambda v: v > 0, "must be positive"),
    "dream.jitter": (lambda v: v >= 0, "must be 0 or more"),
}


def validate_schedules(cfg: Config, frames: int, fps: float, sections: Sequence[str] = tuple(SCHEDULED)) -> None:
    """Evaluate the scheduled settings of `sections`, and the layer weights, at every frame (once each), and
    check the ranges of those that have one."""
    for section in sections:
        for name in SCHEDULED[section]:
            full = f"{section}.{name}"
            value = getattr(getattr(cfg, section), name)
            sched = schedule.parse(value, full)
            seen = [sched(0, fps)] if sched.constant else schedule.values(value, max(int(frames), 1), fps, full)
            if full in RANGES:
                ok, why = RANGES[full]
                bad = next((t for t, v in enumerate(seen) if not ok(v)), None)
                if bad is not None:
                    at = "" if sched.constant else f" at frame {bad}"
                    raise DreamvidError(f"{full}={seen[bad]:g}{at} {why}")
    for weight in cfg.dream.layer_weights:
        schedule.validate(weight, "dream.layer_weights", frames, fps)


T = TypeVar("T")


def ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` items ahead of the consumer.

    An exception from `items` is raised in the consumer after the items before it, in order. When
    the consumer stops early, the thread stops too and `items` is closed (in that thread).
    """
    box: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it: Any = None
        try:
            it = iter(items)
            for item in it:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put("error", e)
        finally:
            close = getattr(it, "close", None) if it is not None else None
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="dreamvid-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


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
    """The output's absolute path; a trailing slash (a folder of frames, whatever its name) is kept."""
    out = cfg.output or os.path.join(run_dir(), default_name)
    folder = out.endswith(("/", os.sep))
    out = os.path.abspath(os.path.expanduser(out)) + (os.sep if folder else "")
    refuse_input_as_output(cfg, out)
    return out


def refuse_input_as_output(cfg: Config, out: Optional[str]) -> None:
    """No output may replace the files a render reads: its input and its guide image."""
    for what, source in (("input", cfg.input), ("guide image", cfg.dream.guide)):
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
    return replace(cfg, input=absolute(cfg.input), dream=replace(cfg.dream, guide=absolute(cfg.dream.guide)),
                   model=replace(cfg.model, weights=weights if weights == RANDOM else absolute(weights)))


def config_dict(cfg: Config) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


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
    import yaml

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
            f.write(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        written = files.place(tmp, path, allowed)
    except OSError as e:
        files.remove(tmp)
        raise DreamvidError(f"cannot write {path}: {e.strerror or e}") from None
    if written != path:
        warnings.warn(f"{path} appeared while dreamvid rendered and is left as it is; the settings are in "
                      f"{written}", stacklevel=2)
    return written


def progress(total: Optional[int], desc: str, enabled: bool, initial: int = 0, unit: str = "frame"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, initial=initial,
                dynamic_ncols=True, leave=True)


# produce(start, state) yields (frame, state for the next frame) for frames start, start + 1, ...
Producer = Callable[[int, Any], Iterator[Tuple[np.ndarray, Any]]]


def render(cfg: Config, out: str, width: int, height: int, fps: Any, total: int, produce: Producer, *,
           inputs: Sequence[Optional[str]] = (), audio: Optional[str] = None, audio_start: float = 0.0,
           lossless: bool = False, frame_bar: bool = True,
           resume_hint: Optional[str] = None, label: str = "dreaming") -> str:
    """Encode `total` frames from `produce` into `out`, checkpointing each finished frame.

    A checkpoint of the same render (same settings and inputs) is resumed: its frames are re-encoded
    and `produce` continues after the last one. A stop signal (Ctrl-C, SIGTERM, SIGHUP) stops after the
    current frame and leaves a playable partial output in the checkpoint folder. A source that ends
    early (`TruncatedVideo` from `produce`) finishes the output with the frames dreamed, then says where
    decoding stopped. What the render writes beside `out` (its settings, its checkpoint folder) is
    claimed before any work, and nothing there of anybody else's is replaced: a file made at `out`
    while the render ran stays, and the render is kept beside it (an error says where).
    frame_bar: False when `produce` shows its own progress (a single frame's steps).
    """
    cfg = replace(cfg, output=out)  # the saved config says where this output is
    config = config_dict(cfg)
    settings = claim_config_file(out, cfg.overwrite)
    ck = Checkpoint(out, render_key(config, tuple(inputs)), config, overwrite=cfg.overwrite)
    ck.lock()  # before anything is read or removed: another render of this output is refused
    try:
        loaded = ck.load()
        start, state = loaded if loaded else (0, None)
        enc = Encoder(out, width, height, fps, audio=audio, audio_start=audio_start,
                      metadata=config_metadata(config), overwrite=cfg.overwrite, lossless=lossless,
                      scratch=ck.scratch)
        enc.open()
        stopped = _encode(enc, ck, total, start, state, produce, cfg.progress and frame_bar, label,
                          resume_hint or f"dreamvid resume={out}")
        final = enc.finish()
        save_config(replace(cfg, output=final), final, settings if final == enc.path else None, scratch=ck.scratch)
        ck.clear()
    finally:
        ck.unlock()
    if final != enc.path:
        raise DreamvidError(f"{enc.path} appeared while dreamvid rendered and is left as it is; the finished render "
                            f"is {final}")
    if stopped is not None:
        raise DreamvidError(f"{stopped}; the {stopped.frames} frames dreamed are in {out}")
    return out


def _encode(enc: Encoder, ck: Checkpoint, total: int, start: int, state: Any, produce: Producer, show: bool,
            label: str, resume: str) -> Optional[TruncatedVideo]:
    """The checkpoint's frames, then `produce`'s, into `enc` and the checkpoint; the truncation that ended
    the source early, if one did."""
    writer = CheckpointWriter(ck)
    stopped: Optional[TruncatedVideo] = None
    try:
        with progress(total, label, show, initial=min(start, total)) as bar, StopAfterFrame() as stop:
            for i in range(min(start, total)):
                enc.write(ck.read_frame(i, (enc.width, enc.height)))
            t = start
            try:
                for frame, state in produce(start, state):
                    writer.add(t, frame, state)
                    enc.write(frame)
                    bar.update(1)
                    t += 1
                    if stop.requested is not None and t < total:
                        writer.close()
                        _stop_partial(enc, ck, t, total, resume, stop.requested)
            except TruncatedVideo as e:
                stopped = e  # keep what was dreamed: the output is finished below
        writer.close()
    except BaseException:
        writer.close(quiet=True)  # what was finished stays resumable
        enc.abort()
        raise
    return stopped


def _stop_partial(enc: Encoder, ck: Checkpoint, done: int, total: int, resume: str, signum: int) -> None:
    ext = ".mkv" if enc.lossless else "" if enc.kind == "png" else os.path.splitext(enc.path)[1].lower()
    partial = enc.finish(into=os.path.join(ck.dir, "partial" + ext))
    raise Interrupted(f"stopped after {done} of {total} frames; partial video: {partial}; "
                      f"resume with: {resume}", exit_code(signum))


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
    merged = OmegaConf.merge(OmegaConf.structured(Config), saved)
    new = OmegaConf.to_object(merged)
    assert isinstance(new, Config)
    new.output = folder[: -len(".state")]
    new.resume, new.progress, new.device = None, cfg.progress, cfg.device
    return new
