"""Neuron mode: render what each channel of a layer responds to, as PNGs, a labelled grid and,
optionally, a video of the optimisation and a with/without-prior comparison."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import fast, files
from .. import neuron as N
from ..config import Config
from ..images import save_image
from ..model import feature_net, resolve_device
from ..errors import DreamvidError
from ..progress import progress
from .context import Context
from .outputs import claim_config_file, save_config

ROW_TITLES = {"pixel": "without prior: plain pixels", "fourier": "with prior: decorrelated Fourier"}


def output_paths(cfg: Config, folder: str, channels: List[int]) -> Dict[str, Any]:
    """Where the pictures go: output=NAME.png is the grid, the others beside it named after it
    (NAME_channel_0005.png, NAME_compare.png, NAME_optimisation.mp4); output=FOLDER (or unset: the run's
    folder) holds grid.png, channel_0005.png..."""
    n = cfg.neuron
    out = os.path.abspath(os.path.expanduser(cfg.output or folder))
    if out.lower().endswith(".png") and not os.path.isdir(out):
        folder, grid = os.path.dirname(out), out
        prefix = os.path.splitext(os.path.basename(out))[0] + "_"
    else:
        if cfg.output and os.path.splitext(out)[1] and not os.path.isdir(out):
            raise DreamvidError(f"mode=neuron writes pictures: output={cfg.output} must be a folder or a .png "
                                f"(the grid, with each channel's picture beside it)")
        if os.path.exists(out) and not os.path.isdir(out):
            raise DreamvidError(f"neuron mode writes a folder of images, but output={cfg.output} is a file: "
                                f"choose a folder, or a .png for the grid")
        folder, prefix = out, ""
        grid = os.path.join(folder, "grid.png")
    return {"folder": folder, "grid": grid,
            "images": [os.path.join(folder, f"{prefix}channel_{c:04d}.png") for c in channels],
            "video": os.path.join(folder, f"{prefix}optimisation.mp4") if n.record_every > 0 else None,
            "compare": os.path.join(folder, f"{prefix}compare.png") if n.compare else None}


def neuron_layer(cfg: Config) -> str:
    layers = list(cfg.dream.layers) or list(cfg.model.layers)[:1]
    if not layers:
        raise DreamvidError("no layer to visualise: set dream.layers=[LAYER] (list them with `dreamvid layers`)")
    if len(layers) > 1:
        raise DreamvidError(f"neuron mode shows one layer at a time, got dream.layers={layers}: "
                            f"pass one, e.g. dream.layers=[{layers[0]}]")
    return layers[0]


def check_neuron(cfg: Config) -> None:
    """What the declarations cannot say alone: the pictures' size against the model's smallest."""
    if cfg.neuron.size < cfg.model.min_size:
        raise DreamvidError(f"neuron.size={cfg.neuron.size} is smaller than the {cfg.model.min_size} px "
                            f"model {cfg.model.name} needs: use neuron.size={cfg.model.min_size} or more")


def even(frame: np.ndarray) -> np.ndarray:
    """Pad to even sides with the grid background: H.264 in yuv420p needs them."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    out = np.empty((h + h % 2, w + w % 2, 3), np.uint8)
    out[:] = N.BACKGROUND
    out[:h, :w] = frame
    return out


def run_neuron(cfg: Config, context: Optional[Context] = None) -> Dict[str, object]:
    """Render one image per channel; returns {"grid", "images", "video", "compare"} (paths or None)."""
    context = context or Context()
    check_neuron(cfg)
    n = cfg.neuron
    device = resolve_device(cfg.device)
    layer = neuron_layer(cfg)
    feats = feature_net(cfg.model.name, [layer], cfg.model.weights, device)
    if fast.plan(cfg.model.name, device, fold_bn=cfg.speed.fold_bn).fold_bn:  # the one speed lever it uses
        feats = fast.prepare(feats, fast.Plan(fold_bn=True))
    with torch.no_grad():
        n_channels = feats(torch.zeros(1, 3, n.size, n.size, device=device))[layer].shape[1]
    channels = N.parse_channels(cfg.channels, n_channels, layer=layer)
    labels = [f"{layer}:{c}" for c in channels]

    paths = output_paths(cfg, context.folder, channels)
    folder = paths["folder"]
    cfg = replace(cfg, output=paths["grid"] if paths["grid"] != os.path.join(folder, "grid.png") else folder)
    planned = [p for p in (paths["grid"], *paths["images"], paths["video"], paths["compare"]) if p is not None]
    if not cfg.overwrite:
        for p in planned:
            if os.path.lexists(p):
                raise DreamvidError(f"output exists: {p} (pass overwrite=true to replace it, "
                                    f"or choose another output=)")
    # what overwrite=true may replace: the files there now (not one that appears while the channels render)
    allowed = {p: files.identity(p) for p in planned}
    settings = claim_config_file(paths["grid"], cfg.overwrite)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DreamvidError(f"cannot create output folder {folder}: {e.strerror}") from None

    params = [n.param] + ([p for p in N.PARAMS if p != n.param] if n.compare else [])
    kept = set(N.recorded_steps(n.steps, n.record_every))
    bar = progress(n.steps * len(params), f"neuron {layer}", cfg.progress, unit="step")

    def render(param: str, encoder=None) -> List[np.ndarray]:
        def callback(state: dict) -> None:
            if state["step"] > 0:
                bar.update(1)
            if encoder is not None and state["step"] in kept:
                grid = N.make_grid(N.to_uint8(state["image"]), labels)
                encoder.write(even(N.titled(grid, f"{layer}   step {state['step']}/{n.steps}")))

        images = N.render(feats, layer, channels, size=n.size, steps=n.steps, lr=n.lr, param=param,
                          objective=n.objective, decay_power=n.decay_power,
                          transforms=N.standard_transforms(), generator=torch.Generator().manual_seed(cfg.seed),
                          device=device, callback=callback)
        return N.to_uint8(images)

    results: Dict[str, List[np.ndarray]] = {}
    video = None
    with bar:
        if paths["video"] is not None:
            from ..video import Encoder

            frame = even(N.titled(np.zeros(N.grid_size(len(channels), n.size, n.size) + (3,), np.uint8), ""))
            enc = Encoder(paths["video"], frame.shape[1], frame.shape[0], cfg.fps, overwrite=cfg.overwrite)
            enc.open()
            try:
                results[n.param] = render(n.param, enc)
            except BaseException:
                enc.abort()
                raise
            video = enc.finish()
        else:
            results[n.param] = render(n.param)
        for param in params[1:]:
            results[param] = render(param)

    images = results[n.param]
    kept = []  # (the name asked for, where it went) for each file whose name was taken while rendering
    for path, img in zip(paths["images"], images):
        kept.append((path, save_image(path, img, allowed=allowed[path])))
    kept.append((paths["grid"], save_image(paths["grid"], N.make_grid(images, labels), allowed=allowed[paths["grid"]])))
    save_config(cfg, paths["grid"], settings)
    if paths["compare"] is not None:
        rows = [(ROW_TITLES[p], results[p], labels) for p in ("pixel", "fourier")]
        kept.append((paths["compare"], save_image(paths["compare"], N.comparison_grid(rows),
                                                  allowed=allowed[paths["compare"]])))
    if video is not None:
        kept.append((paths["video"], video))
    moved = [(a, b) for a, b in kept if a != b]
    if moved:
        raise DreamvidError(f"{', '.join(os.path.basename(a) for a, _ in moved)} appeared in {folder} while dreamvid "
                            f"rendered and {'are' if len(moved) > 1 else 'is'} left as {'they are' if len(moved) > 1 else 'it is'}; "
                            f"the pictures dreamvid made instead: {', '.join(os.path.basename(b) for _, b in moved)}")
    extra = [os.path.basename(paths[k]) for k in ("compare", "video") if paths[k] is not None]
    print(f"dreamvid: {len(images)} channel image{'s' * (len(images) != 1)} "
          f"({os.path.basename(paths['images'][0])}...){''.join(', ' + e for e in extra)} in {folder}")
    return paths
