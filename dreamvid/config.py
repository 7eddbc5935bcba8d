"""Typed configuration: the schema and every default live here, once.

Hydra composes `conf/` on top of these dataclasses; a key that is not declared here is rejected,
so a typo on the command line fails at once instead of being silently ignored.
Settings typed `Any` accept a number or a schedule string (see `dreamvid.schedule`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

MODES = ("zoom", "video", "neuron")


@dataclass
class ModelConfig:
    name: str = "lite0"
    weights: Optional[str] = None  # explicit weights file; default: the packaged or torch-hub file
    layers: List[str] = field(default_factory=lambda: ["blocks.10"])  # this model's default dream layers
    min_size: int = 32  # smallest octave side (pixels) the network accepts


@dataclass
class DreamConfig:
    layers: List[str] = field(default_factory=list)  # empty: the model's default layers
    layer_weights: List[Any] = field(default_factory=list)  # one per layer; empty: all 1
    channels: List[List[int]] = field(default_factory=list)  # one list per layer; empty list: all channels
    octaves: Any = 4
    octave_scale: Any = 1.4
    iterations: Any = 10
    step: Any = 1.5  # mean change per iteration, in 0-255 pixel levels (the 2015 notebook's step_size)
    jitter: Any = 32  # random roll in pixels, undone after each step
    guide: Optional[str] = None  # guide image: dream towards its features instead of amplifying
    guide_weight: Any = 1.0


@dataclass
class MotionConfig:
    """Rates per second; converted to per-frame by compounding, exact for any fps."""

    zoom: Any = 1.25  # scale factor per second (>1 zooms in)
    angle: Any = 0.0  # degrees per second, counter-clockwise
    tx: Any = 0.0  # pixels per second, image content moves right
    ty: Any = 0.0  # pixels per second, image content moves down
    cx: Any = 0.5  # transform centre, fraction of width
    cy: Any = 0.5  # transform centre, fraction of height
    border: str = "reflection"  # reflection | border (replicate); never black


@dataclass
class FlowConfig:
    method: str = "dis"  # dis | farneback | none
    preset: str = "medium"  # DIS preset: ultrafast | fast | medium
    workers: int = 2  # threads computing the flow a few frames ahead of the dream; 0: in the dreaming thread


@dataclass
class CoherenceConfig:
    warp: str = "residual"  # residual | frame: what of the previous dream is carried along the flow
    blend: Any = 1.0  # weight of the warped dream on reliable pixels
    iterations: Any = 4  # iterations per octave on frames that start from a warped dream
    octaves: Any = 2  # octaves on frames that start from a warped dream
    # step (dream.step's units) on frames that start from a warped dream, where the carried dream is
    # grown: a gentle touch-up that keeps it alive
    step: Any = 0.1
    # step on pixels the carried dream does not cover yet (entering the picture, uncovered), easing to
    # `step` as they are dreamed: what enters a pan grows its dream in a few frames
    new_step: Any = 1.0
    cut_threshold: float = 0.5  # fraction of unreliable pixels that marks a scene cut
    color_match: Any = 0.0  # 0..1: match LAB statistics of each dreamed frame to its source frame
    strength_cap: float = 1.0  # carried dream at most this x the last keyframe's strength (mean and local); 0: off
    interpolation: str = "bicubic"  # bicubic | bilinear: resampling of the carried dream (bilinear blurs it)


@dataclass
class NeuronConfig:
    steps: int = 256
    size: int = 128
    lr: float = 0.05
    param: str = "fourier"  # fourier (decorrelated, 1/f) | pixel
    objective: str = "channel"  # channel | neuron (the centre position of the channel)
    record_every: int = 0  # >0: record a frame of the optimisation every N steps into a video
    compare: bool = False  # also render the plain-pixel parameterisation side by side
    decay_power: float = 1.0  # Fourier amplitudes scale as 1/f**decay_power (1: natural images; more: smoother)


@dataclass
class SpeedConfig:
    """How frames are computed. The look stays; bf16 turns the gradient a little (cosine ~0.96), so pixels differ."""

    precision: str = "auto"  # auto | fp32 | bf16: the network under bf16 autocast, the image in fp32
    graphs: str = "auto"  # auto | on | off: capture each octave's step in a CUDA graph (CUDA only)
    channels_last: str = "auto"  # auto | on | off: NHWC layout for the network
    fold_bn: str = "auto"  # auto | on | off: batch norms folded into their convolutions (auto: on)
    # auto | on | off: cuDNN picks algorithms by timing them (CUDA). Timings vary from run to run, so a
    # resumed render may then pick other algorithms and differ from an uninterrupted one by float rounding.
    cudnn_benchmark: str = "auto"
    tile: int = -1  # tile side in px; 0: whole frames; -1: tiles only where free memory asks (GPU, or host on a CPU)
    tile_overlap: int = 64  # px shared by neighbouring tiles, blended
    tile_memory: float = 0.0  # GiB auto tiles may use; 0: 80% of the free GPU memory


@dataclass
class Config:
    mode: str = "zoom"
    input: Optional[str] = None  # a picture (zoom); a video file or a folder of frames (video); unset: clouds
    output: Optional[str] = None  # .mp4 | .gif | folder for PNG frames | .png/.jpg/.webp (one still); default: dream.mp4
    frames: Optional[int] = None  # zoom length; unset: 36, or 1 for a still (an image output)
    fps: float = 12.0  # the zoom's rate, and a folder of frames' (a video file keeps its own)
    width: Optional[int] = None
    height: Optional[int] = None
    first_frame: int = 0  # video: start at this frame of the clip (0: its first), its sound from there
    max_frames: Optional[int] = None  # video: dream at most this many frames (from first_frame)
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    resume: Optional[str] = None
    progress: bool = True
    segments: str = "off"  # video mode: auto splits the clip at cuts and into chunks dreamed as separate jobs
    segment_frames: int = 300  # segments=auto: the longest segment, in frames
    segment_overlap: int = 8  # segments=auto: frames dreamed by both segments and cross-faded at a non-cut join
    segment: Optional[int] = None  # set by dreamvid: the job dreams this segment of the plan
    channels: Any = field(default_factory=list)  # neuron mode: an int, "a-b", "first:N", or a list of them
    model: ModelConfig = field(default_factory=ModelConfig)
    dream: DreamConfig = field(default_factory=DreamConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    coherence: CoherenceConfig = field(default_factory=CoherenceConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)


def register() -> None:
    """Register the schemas so that `conf/` YAML files can extend them."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="flow", name="base_flow", node=FlowConfig)
