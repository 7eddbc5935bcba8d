"""Typed configuration: every setting declared once, here.

Each field is a `setting(...)`: its default, a one-line help, the modes that use it, the rule its
values must keep, and whether it takes a schedule. Everything else is read off these declarations:
the checks at the door (`dreamvid.settings.check`), the schedule checks, the warning for a setting a
mode ignores, `dreamvid --help`, and the settings tables in README.md and docs/ (held to them by a
test). Hydra composes `conf/` on top of these dataclasses; a key that is not declared here is
rejected, so a typo on the command line fails at once instead of being silently ignored. Settings
typed `Any` take a number or a schedule string (see `dreamvid.schedule`).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

MODES = ("zoom", "video", "neuron")
DREAMING = ("zoom", "video")  # the modes that dream pictures (neuron mode renders channels from noise)

# Bounds that say why (checked before any work)
MAX_SIDE = 16384  # H.264's largest side
MAX_FRAMES = 1_000_000  # 23 hours at 12 fps: each frame is checkpointed as a file of its own
MAX_FPS = 1000.0  # no screen shows more; a GIF plays at most 50


@dataclass(frozen=True)
class Rule:
    """What a setting's values must be: `test(value)`, and the words that say so ("must be at least 1")."""

    test: Callable[[Any], bool]
    says: str


def at_least(low: float, why: str = "") -> Rule:
    return Rule(lambda v: v >= low, (f"must be at least {low:g}" if low else "must be 0 or more") + why)


def above(low: float, why: str = "") -> Rule:
    return Rule(lambda v: v > low, ("must be positive" if low == 0 else f"must be greater than {low:g}") + why)


def between(low: float, high: float, why: str = "") -> Rule:
    return Rule(lambda v: low <= v <= high, f"must be between {low:g} and {high:g}{why}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "must be one of " + ", ".join(choices))


def setting(default: Any = MISSING, help: str = "", *, modes: Sequence[str] = MODES, rule: Optional[Rule] = None,
            scheduled: bool = False, unused: str = "", factory: Optional[Callable[[], Any]] = None,
            internal: bool = False) -> Any:
    """A dataclass field with its declaration: help (one line), the modes that use it, the rule its values keep
    (checked at every frame when `scheduled`), `unused`: what to say when a mode that ignores it is given it
    (default: its help, and the modes that use it); `internal`: set by dreamvid, not listed for users."""
    meta = {"help": help, "modes": tuple(modes), "rule": rule, "scheduled": scheduled, "unused": unused,
            "internal": internal}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """The network: built-in or torchvision's, its weights, the layers it dreams by default."""

    name: str = setting("lite0", "the network: lite0, lite2, googlenet, vgg16, vgg19, inception_v3, resnet50")
    weights: Optional[str] = setting(None, "a weights file (a state dict), or random; unset: the model's own file")
    layers: List[str] = setting(help="this model's default dream layers", factory=lambda: ["blocks.10"])
    min_size: int = setting(32, "the smallest octave side in px the network accepts", rule=at_least(8))


@dataclass
class DreamConfig:
    """How each frame is dreamed: layers, octaves, steps."""

    layers: List[str] = setting(help="layers whose activations are amplified (a keyframe schedule may switch them); "
                                     "empty: the model's", factory=list)
    layer_weights: List[Any] = setting(help="one weight per layer (each may be a schedule); empty: all 1",
                                       modes=DREAMING, factory=list)
    channels: List[List[int]] = setting(help="one list of channels per layer; empty: all channels", modes=DREAMING,
                                        factory=list)
    octaves: Any = setting(4, "octaves of the image pyramid", modes=DREAMING, rule=at_least(1), scheduled=True)
    octave_scale: Any = setting(1.4, "size ratio between octaves", modes=DREAMING, rule=above(1), scheduled=True)
    iterations: Any = setting(10, "ascent steps per octave (0: not dreamed, only moved)", modes=DREAMING,
                              rule=at_least(0, " (0: the frames are not dreamed, only moved)"), scheduled=True)
    step: Any = setting(1.5, "mean change per step, in 0-255 levels (the 2015 notebook's step_size)", modes=DREAMING,
                        rule=above(0), scheduled=True)
    jitter: Any = setting(32, "random roll in px, undone after each step", modes=DREAMING, rule=at_least(0),
                          scheduled=True)
    guide: Optional[str] = setting(None, "a guide picture, or pictures at keyframes ('0:(a.jpg), 48:(b.jpg)', blended "
                                         "between): dream towards its features", modes=DREAMING)
    guide_weight: Any = setting(1.0, "how strongly the guide pulls", modes=DREAMING, scheduled=True)
    mask: Optional[str] = setting(None, "where to dream: a picture, or a clip or folder as long as the render; white "
                                        "dreams, black keeps the source (zoom: the undreamed picture)", modes=DREAMING)
    mask_strength: Any = setting(1.0, "0..1: how much of the dream the mask's white lets through",
                                 modes=DREAMING, rule=between(0, 1), scheduled=True)


@dataclass
class MotionConfig:
    """The camera of a zoom, in rates per second; converted to per frame by compounding, exact for any fps."""

    UNUSED = "motion.* moves the camera of mode=zoom (a clip keeps its own motion)"

    zoom: Any = setting(1.25, "scale factor per second (>1 zooms in)", modes=("zoom",),
                        rule=above(0, " (1 = no zoom, 1.25 = 25% closer per second)"), scheduled=True)
    angle: Any = setting(0.0, "degrees per second, counter-clockwise", modes=("zoom",), scheduled=True)
    tx: Any = setting(0.0, "px per second, the picture moves right", modes=("zoom",), scheduled=True)
    ty: Any = setting(0.0, "px per second, the picture moves down", modes=("zoom",), scheduled=True)
    cx: Any = setting(0.5, "transform centre, fraction of the width", modes=("zoom",), scheduled=True)
    cy: Any = setting(0.5, "transform centre, fraction of the height", modes=("zoom",), scheduled=True)
    border: str = setting("reflection", "what fills the edges: reflection or border (replicate); never black",
                          modes=("zoom",), rule=one_of("reflection", "border"))
    units: str = setting("second", "second: zoom, angle, tx and ty are rates per second; frame: per frame, as "
                                   "Deforum's (zoom 0:(1.04) pastes and moves the same)",
                         modes=("zoom",), rule=one_of("second", "frame"))


@dataclass
class ColorConfig:
    """Colour coherence of a zoom: every frame's colours matched to the first frame's (or a picture's), so
    that a long zoom keeps its look (docs/zoom.md)."""

    UNUSED = "color.* keeps a zoom's colours (mode=zoom; a clip matches its own frames: coherence.color_match)"

    match: Any = setting(1.0, "0..1: each frame's colour distribution moved to the reference's (0: off)",
                         modes=("zoom",), rule=between(0, 1), scheduled=True)
    space: str = setting("rgb", "where the colours are matched: rgb (each primary), lab (lightness and colour) or "
                                "hsv (saturation and value; hue kept)", modes=("zoom",), rule=one_of("rgb", "lab", "hsv"))
    reference: Optional[str] = setting(None, "a picture whose colours every frame keeps; unset: the first frame's",
                                       modes=("zoom",))


@dataclass
class FlowConfig:
    """Optical flow between a clip's frames."""

    UNUSED = "flow.* follows the motion of a clip (mode=video)"

    method: str = setting("dis", "dis, farneback or none (every frame dreamed alone)", modes=("video",),
                          rule=one_of("dis", "farneback", "none"))
    preset: str = setting("medium", "DIS preset: ultrafast, fast or medium", modes=("video",),
                          rule=one_of("ultrafast", "fast", "medium"))
    workers: int = setting(2, "threads computing the flow ahead of the dream; 0: in the dreaming thread",
                           modes=("video",), rule=at_least(0))


@dataclass
class CoherenceConfig:
    """How the dream is carried from frame to frame of a clip (docs/video.md)."""

    UNUSED = ("coherence.* carries the dream from frame to frame of a clip (mode=video; a zoom keeps its colours "
              "with color.match)")

    warp: str = setting("residual", "what is carried along the flow: residual (the dream) or frame (the whole output)",
                        modes=("video",), rule=one_of("residual", "frame"))
    blend: Any = setting(1.0, "weight of the carried dream on reliable pixels", modes=("video",), rule=at_least(0),
                         scheduled=True)
    iterations: Any = setting(4, "steps per octave on frames that start from a carried dream", modes=("video",),
                              rule=at_least(0), scheduled=True)
    octaves: Any = setting(2, "octaves on frames that start from a carried dream", modes=("video",),
                           rule=at_least(1), scheduled=True)
    step: Any = setting(0.1, "step (dream.step's units) of that touch-up, where the carried dream is grown",
                        modes=("video",), rule=at_least(0), scheduled=True)
    new_step: Any = setting(1.0, "step where the carried dream does not reach yet (entering, uncovered)",
                            modes=("video",), rule=at_least(0), scheduled=True)
    cut_threshold: float = setting(0.5, "fraction of unreliable pixels that marks a scene cut", modes=("video",),
                                   rule=between(0, 1, " (a fraction of the pixels)"))
    color_match: Any = setting(0.0, "0..1: match the LAB statistics of each dream to its source frame",
                               modes=("video",), rule=between(0, 1), scheduled=True)
    strength_cap: float = setting(1.0, "carried dream at most this x the last keyframe's strength; 0: off",
                                  modes=("video",), rule=at_least(0))
    interpolation: str = setting("bicubic", "resampling of the carried dream: bicubic or bilinear (blurs it)",
                                 modes=("video",), rule=one_of("bicubic", "bilinear"))


@dataclass
class NeuronConfig:
    """The neuron explorer: a picture per channel, from noise (docs/neuron.md)."""

    UNUSED = "neuron.* renders what channels respond to (mode=neuron)"

    steps: int = setting(256, "optimisation steps per channel", modes=("neuron",), rule=at_least(1))
    size: int = setting(128, "side of each channel's picture in px", modes=("neuron",), rule=between(8, 4096))
    lr: float = setting(0.05, "learning rate", modes=("neuron",), rule=above(0))
    param: str = setting("fourier", "fourier (decorrelated, 1/f: the natural-image prior) or pixel",
                         modes=("neuron",), rule=one_of("fourier", "pixel"))
    objective: str = setting("channel", "channel (all of it) or neuron (its centre position)", modes=("neuron",),
                             rule=one_of("channel", "neuron"))
    record_every: int = setting(0, "record a frame of the optimisation every N steps into a video; 0: off",
                                modes=("neuron",), rule=at_least(0))
    compare: bool = setting(False, "also render plain pixels beside the prior", modes=("neuron",))
    decay_power: float = setting(1.0, "Fourier amplitudes scale as 1/f**this (1: natural images; more: smoother)",
                                 modes=("neuron",), rule=at_least(0))


AUTO_ON_OFF = one_of("auto", "on", "off")


@dataclass
class SpeedConfig:
    """How frames are computed, not how they look (bf16 turns the gradient a little, so pixels differ)."""

    precision: str = setting("auto", "fp32 or bf16 (the network under autocast); auto: bf16 for VGG on a GPU",
                             modes=DREAMING, rule=one_of("auto", "fp32", "bf16"))
    graphs: str = setting("auto", "capture each octave's step in a CUDA graph (CUDA only): auto, on or off",
                          modes=DREAMING, rule=AUTO_ON_OFF)
    channels_last: str = setting("auto", "NHWC layout for the network: auto, on or off", modes=DREAMING, rule=AUTO_ON_OFF)
    fold_bn: str = setting("auto", "batch norms folded into their convolutions: auto (on), on or off", rule=AUTO_ON_OFF)
    # Timings vary from run to run, so a resumed render may then pick other algorithms and differ from an
    # uninterrupted one by float rounding.
    cudnn_benchmark: str = setting("auto", "cuDNN times its algorithms per octave (CUDA): auto, on or off",
                                   modes=DREAMING, rule=AUTO_ON_OFF)
    tile: int = setting(-1, "tile side in px; 0: whole frames; -1: tiles only where free memory asks", modes=DREAMING,
                        rule=at_least(-1, " (-1: automatic, 0: whole frames, or a size in px)"))
    tile_overlap: int = setting(64, "px shared by neighbouring tiles, blended", modes=DREAMING, rule=at_least(0))
    tile_memory: float = setting(0.0, "GiB automatic tiles may use; 0: 80% of the free GPU memory, or on a CPU the "
                                      "fastest: frames whole up to 4 GiB, else 2 GiB tiles", modes=DREAMING,
                                 rule=at_least(0))


def _frames_rule() -> Rule:
    return Rule(lambda v: 1 <= v <= MAX_FRAMES, f"must be between 1 and {MAX_FRAMES:,} (each frame is checkpointed "
                                                f"as a file of its own: render a longer one in parts)")


def _fps_rule() -> Rule:
    return Rule(lambda v: math.isfinite(v) and 0 < v <= MAX_FPS,
                f"must be a positive number of frames per second, at most {MAX_FPS:g} (no screen shows more)")


def _side_rule() -> Rule:
    return Rule(lambda v: 1 <= v <= MAX_SIDE, f"must be between 1 and {MAX_SIDE} px (H.264's largest side): "
                                              f"dream at a smaller size and upscale")


@dataclass
class Config:
    """The settings of one render."""

    mode: str = setting("zoom", "zoom (into a picture), video (a clip) or neuron (what channels respond to)",
                        rule=one_of(*MODES))
    input: Optional[str] = setting(None, "a picture (zoom); a video file or a folder of frames (video); unset: clouds",
                                   modes=DREAMING, unused="input is the picture or clip to dream; mode=neuron starts "
                                                          "from noise")
    loop: bool = setting(False, "zoom: a seamless loop, the last frame leading into the first (the last second "
                                "cross-fades into the start)", modes=("zoom",))
    audio: Optional[str] = setting(None, "a song for loudness(t) and onset(t) in schedules; zoom: as long as the song "
                                         "unless frames= is set, the song muxed in; video: unset: the clip's sound",
                                   modes=DREAMING)
    output: Optional[str] = setting(None, ".mp4, .gif, a folder for PNG frames, or one still (.png, .jpg, .webp); "
                                          "neuron: a folder, or the grid's .png")
    frames: Optional[int] = setting(None, "the zoom's length; unset: 36, or 1 for a still", modes=("zoom",),
                                    rule=_frames_rule())
    fps: float = setting(12.0, "the zoom's rate, a folder of frames' rate, the neuron recording's rate",
                         rule=_fps_rule())
    width: Optional[int] = setting(None, "width in px; unset: the input's (the clouds: 384x216 on a CPU, 1280x720 on a GPU); one side "
                                   "given: aspect kept",
                                   modes=DREAMING, rule=_side_rule())
    height: Optional[int] = setting(None, "height in px; unset: the input's", modes=DREAMING, rule=_side_rule())
    first_frame: int = setting(0, "video: start at this frame of the clip, its sound from there", modes=("video",),
                               rule=at_least(0, " (a frame of the clip)"),
                               unused="first_frame is where a clip's dream starts (mode=video)")
    max_frames: Optional[int] = setting(None, "video: dream at most this many frames (from first_frame)",
                                        modes=("video",), rule=at_least(1))
    seed: int = setting(0, "every frame's randomness depends only on the seed and the frame number")
    device: str = setting("auto", "auto, cpu or cuda", rule=one_of("auto", "cpu", "cuda"))
    cadence: int = setting(1, "a full dream every N-th frame (zoom: at N times dream.step); those between: the dream "
                              "moved (zoom: eased in; video: along the flow)",
                           modes=DREAMING, rule=between(1, 100))
    cadence_touch_up: int = setting(1, "with cadence > 1: ascent steps at full size on each frame between (0: none)",
                                    modes=DREAMING, rule=between(0, 100))
    threads: int = setting(0, "CPU threads for the network; 0: the cores nobody else uses now (a clip's flow workers count)",
                           rule=at_least(0))
    overwrite: bool = setting(False, "replace an existing output (never a file dreamvid did not write beside it)")
    resume: Optional[str] = setting(None, "continue an interrupted render (its output or run folder)")
    progress: bool = setting(True, "show progress (a bar on a terminal, a line every few seconds elsewhere)")
    segments: str = setting("off", "auto: dream a clip as segment jobs through the launcher, then join",
                            modes=("video",), rule=one_of("off", "auto"))
    segment_frames: int = setting(300, "segments=auto: the longest segment, in frames", modes=("video",),
                                  rule=at_least(1))
    segment_overlap: int = setting(8, "segments=auto: frames dissolved at a join inside a scene", modes=("video",),
                                   rule=at_least(0))
    segment: Optional[int] = setting(None, "the segment a job of segments=auto dreams", modes=("video",),
                                     internal=True)
    channels: Any = setting(help="neuron: channels to render: an int, 'a-b', 'first:N', or a list of them",
                            modes=("neuron",), factory=list)
    model: ModelConfig = setting(factory=ModelConfig)
    dream: DreamConfig = setting(factory=DreamConfig)
    motion: MotionConfig = setting(factory=MotionConfig)
    color: ColorConfig = setting(factory=ColorConfig)
    flow: FlowConfig = setting(factory=FlowConfig)
    coherence: CoherenceConfig = setting(factory=CoherenceConfig)
    neuron: NeuronConfig = setting(factory=NeuronConfig)
    speed: SpeedConfig = setting(factory=SpeedConfig)


# The config groups of conf/ (`model=vgg16` picks conf/model/vgg16.yaml) and what each chooses
GROUPS = {"model": "a network and its default layers", "flow": "an optical flow method and preset",
          "preset": "a look (dream.layers and more)", "debug": "everything tiny, for tests and a quick look"}


@dataclass(frozen=True)
class Declared:
    """One setting as declared: its dotted name and what its `setting(...)` says."""

    name: str
    default: Any
    type: str
    help: str
    modes: Tuple[str, ...]
    rule: Optional[Rule]
    scheduled: bool
    unused: str
    internal: bool

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0] if "." in self.name else ""


def sections() -> List[Tuple[str, Any]]:
    """(name, schema) of Config's sections, in order."""
    import dataclasses

    return [(f.name, f.default_factory) for f in dataclasses.fields(Config)
            if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None)]


def declared(schema: Any = Config, prefix: str = "") -> List[Declared]:
    """Every setting of `schema` (and its sections), in the order declared."""
    import dataclasses

    found: List[Declared] = []
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            found += declared(f.default_factory, prefix + f.name + ".")
            continue
        m = f.metadata
        default = f.default if f.default is not MISSING else (f.default_factory() if callable(f.default_factory)
                                                              else None)
        found.append(Declared(prefix + f.name, default, str(f.type), m.get("help", ""), m.get("modes", MODES),
                              m.get("rule"), m.get("scheduled", False), m.get("unused", ""), m.get("internal", False)))
    return found


def section_unused(section: str) -> str:
    """What a section's settings are for, said when a mode that ignores them is given one (MotionConfig.UNUSED)."""
    schema = dict(sections()).get(section)
    return getattr(schema, "UNUSED", "") if schema is not None else ""


def scheduled(section: str) -> Tuple[str, ...]:
    """The settings of a section that take a schedule (evaluated per frame)."""
    return tuple(d.name.split(".", 1)[1] for d in declared() if d.scheduled and d.section == section)


def from_dict(data: Any, schema: Any = Config) -> Any:
    """The typed config from a plain dict (a saved render's settings): every key declared, sections nested."""
    import dataclasses

    from .errors import DreamvidError

    if not isinstance(data, dict):
        raise DreamvidError(f"saved settings are not a mapping: {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise DreamvidError(f"saved settings hold {', '.join(unknown)}, which this dreamvid does not have")
    values = {}
    for name, value in data.items():
        sub = fields[name].default_factory
        if dataclasses.is_dataclass(sub if callable(sub) else None):
            value = from_dict(value, sub)
        values[name] = value
    return schema(**values)
