"""README pictures for neuron mode: a labelled grid of channels of the built-in model's default layer,
a looping GIF of the features emerging from noise, and a without/with-prior comparison.

    python scripts/neuron_grid.py docs/media/neuron

Takes a few minutes on a CPU (256 steps of 8 images at 128 px, then the same without the prior).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from tqdm import tqdm

from dreamvid import neuron as N
from dreamvid.config import ModelConfig
from dreamvid.model import feature_net, resolve_device
from dreamvid.files import identity  # the pictures of an earlier run are replaced
from dreamvid.images import save_image
from dreamvid.pipeline.neuron import ROW_TITLES, even
from dreamvid.video import Encoder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="where grid.png, emergence.gif and compare.png go")
    p.add_argument("--layer", default=ModelConfig().layers[0])
    p.add_argument("--channels", default="first:8", help="e.g. first:8, 10-17, or 3,14,27")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--every", type=int, default=8, help="a GIF frame every N steps")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-compare", action="store_true", help="skip the plain-pixel render")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    feats = feature_net(ModelConfig().name, [args.layer], device=device)
    with torch.no_grad():
        n_channels = feats(torch.zeros(1, 3, args.size, args.size, device=device))[args.layer].shape[1]
    channels = N.parse_channels(args.channels.split(",") if "," in args.channels else args.channels, n_channels,
                                layer=args.layer)
    labels = [f"{args.layer}:{c}" for c in channels]
    os.makedirs(args.folder, exist_ok=True)
    out = {name: os.path.join(args.folder, name) for name in ("grid.png", "emergence.gif", "compare.png")}

    def render(param, callback=None):
        t = time.time()
        with tqdm(total=args.steps, desc=param, unit="step", dynamic_ncols=True) as bar:
            def step(state):
                bar.update(state["step"] - bar.n)
                if callback is not None:
                    callback(state)

            images = N.render(feats, args.layer, channels, size=args.size, steps=args.steps, lr=args.lr,
                              param=param, generator=torch.Generator().manual_seed(args.seed), device=device,
                              callback=step)
        print(f"{param}: {len(channels)} channels x {args.steps} steps in {time.time() - t:.0f} s", file=sys.stderr)
        return N.to_uint8(images)

    kept = set(N.recorded_steps(args.steps, args.every))
    frame_shape = even(N.titled(N.make_grid(
        [torch.zeros(args.size, args.size, 3, dtype=torch.uint8).numpy()] * len(channels), labels), "")).shape
    with Encoder(out["emergence.gif"], frame_shape[1], frame_shape[0], args.fps, overwrite=True) as enc:
        def record(state):
            if state["step"] in kept:
                grid = N.make_grid(N.to_uint8(state["image"]), labels)
                frame = even(N.titled(grid, f"{args.layer}   step {state['step']}/{args.steps}"))
                # Hold the finished features for a second and a half before the loop restarts.
                for _ in range(1 + (int(args.fps * 1.5) if state["step"] == max(kept) else 0)):
                    enc.write(frame)

        fourier = render("fourier", record)
    save_image(out["grid.png"], N.make_grid(fourier, labels), allowed=identity(out["grid.png"]))
    written = [out["grid.png"], out["emergence.gif"]]
    if not args.no_compare:
        pixel = render("pixel")
        save_image(out["compare.png"], N.comparison_grid([(ROW_TITLES["pixel"], pixel, labels),
                                                         (ROW_TITLES["fourier"], fourier, labels)]),
                   allowed=identity(out["compare.png"]))
        written.append(out["compare.png"])
    print("\n".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
