"""The dreamer every dreaming mode uses: the model loaded once, and a function that dreams one frame
with that frame's (possibly scheduled) settings through the fast path and, where memory asks, tiles."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional

import torch

from .. import dream as D
from .. import fast, schedule, tiling
from ..config import Config
from ..images import read_image, to_tensor
from ..model import feature_net
from ..progress import progress

def dreamer(cfg: Config, device: torch.device,
            report: Optional[Callable[[str, Any], None]] = None) -> Callable[..., torch.Tensor]:
    """The model loaded once, and a function that dreams one frame with frame t's settings.

    Frames go through the fast path (`speed.*`: precision, layout, CUDA graphs) and, where the GPU's
    memory asks for it, tiles; a frame that runs out of GPU memory is dreamed again in tiles.
    """
    layer_steps = schedule.parse_steps(list(cfg.dream.layers) or list(cfg.model.layers), "dream.layers")
    every_layer = list(dict.fromkeys(n for t in layer_steps.keyframes for n in layer_steps(t)))
    plan, stepper = fast.make_stepper(cfg.model.name, device, cfg.speed)
    if device.type == "cuda":  # process-wide: set both ways, so that a sweep's next job gets its own setting
        torch.backends.cudnn.benchmark = plan.cudnn_benchmark  # octave shapes are fixed: timed in the warm-up
    feats = fast.prepare(feature_net(cfg.model.name, every_layer, cfg.model.weights, device), plan)
    budget = cfg.speed.tile_memory * 2**30 if cfg.speed.tile_memory > 0 else None
    frame_steps = tiling.FrameSteps(stepper, feats, every_layer, device, tile=cfg.speed.tile,
                                    overlap=cfg.speed.tile_overlap, budget=budget)
    # Guide pictures (a keyframe schedule of them blends from one to the next): their features, once each
    guide_at = schedule.parse_pictures(cfg.dream.guide) if cfg.dream.guide else None
    features: Dict[str, Dict[str, torch.Tensor]] = {}
    for picture in (guide_at.pictures if guide_at else ()):
        if picture not in features:
            features[picture] = D.guide_features(feats, to_tensor(read_image(picture, "dream.guide"), device),
                                                 every_layer)
    # The objective of the last frame, reused while its layers stay: a CUDA graph is captured per objective.
    # Layer and guide weights (schedules may change them every frame) live in device tensors that the
    # objective reads, updated in place, so the graphs serve every frame.
    last: dict = {}

    def dream_frame(x: torch.Tensor, t: int, s: dict, weight: Optional[torch.Tensor] = None,
                    on_step: D.Callback = None) -> torch.Tensor:
        layers = layer_steps(t)
        weights = [float(schedule.at(w, t, cfg.fps, "dream.layer_weights")) for w in cfg.dream.layer_weights]
        weights = weights or [1.0] * len(layers)
        a, b, mix = guide_at(t) if guide_at else (None, None, 0.0)
        pair = (a, b if mix > 0 else None)
        if last.get("layers") != layers or last.get("pair") != pair:
            w = torch.tensor(weights, dtype=torch.float32, device=device)
            g = torch.tensor(float(s["guide_weight"]), dtype=torch.float32, device=device)
            m = torch.tensor(mix, dtype=torch.float32, device=device)
            blend = (features[b], m) if pair[1] is not None else None
            last.update(layers=layers, pair=pair, weights=weights, guide_weight=s["guide_weight"], w=w, g=g, m=m,
                        mix=mix, objective=D.make_objective(feats, layers, w, cfg.dream.channels,
                                                            features.get(a), guide_weight=g, blend=blend))
        if last["mix"] != mix:
            last["m"].fill_(mix)
            last["mix"] = mix
        if last["weights"] != weights:
            last["w"].copy_(torch.tensor(weights, dtype=torch.float32))
            last["weights"] = weights
        if last["guide_weight"] != s["guide_weight"]:
            last["g"].fill_(float(s["guide_weight"]))
            last["guide_weight"] = s["guide_weight"]

        octaves = int(round(s["octaves"]))
        if report is not None:  # the size may cap the octaves: say so once per distinct value
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ran = len(D.octave_sizes(x.shape[-2], x.shape[-1], octaves, s["octave_scale"], cfg.model.min_size))
            if ran != octaves and last.get("ran") != ran:
                last["ran"] = ran
                report("dream.octaves", ran)

        def run(step_fn) -> torch.Tensor:
            return D.dream(x, last["objective"], octaves=octaves, octave_scale=s["octave_scale"],
                           iterations=int(round(s["iterations"])), step=s["step"], jitter=int(round(s["jitter"])),
                           min_size=cfg.model.min_size, generator=D.image_generator(cfg.seed, t), step_fn=step_fn,
                           step_weight=weight, callback=on_step)

        return frame_steps.run(run, x.shape[-2], x.shape[-1])

    dream_frame.tile_for = frame_steps.tile_for  # type: ignore[attr-defined]  # the tile a frame size gets
    return dream_frame


def with_step_bar(dream_frame, cfg: Config):
    """dream_frame with a progress bar of its ascent steps: for a render of one frame (a still), whose
    frame bar would sit at 0/1 for the whole of a large picture's minutes."""
    def dream_with_bar(x: torch.Tensor, t: int, s: dict, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        with warnings.catch_warnings():  # the dream itself warns about octaves it drops
            warnings.simplefilter("ignore")
            octaves = len(D.octave_sizes(x.shape[-2], x.shape[-1], int(round(s["octaves"])), s["octave_scale"],
                                         cfg.model.min_size))
        iterations = int(round(s["iterations"]))
        with progress(octaves * iterations, "dreaming", cfg.progress, unit="step") as bar:
            def on_step(info: dict) -> None:
                if bar.disable:
                    return
                if x.is_cuda:  # the host queues steps far ahead of the GPU: count those done
                    torch.cuda.synchronize(x.device)
                bar.n = info["octave"] * iterations + info["iteration"] + 1  # a frame dreamed again in tiles recounts
                bar.refresh()

            return dream_frame(x, t, s, weight, on_step)

    return dream_with_bar
