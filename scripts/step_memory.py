#!/usr/bin/env python
"""Peak memory of one dream step against the bytes autograd saves, per input pixel, on the CPU.

    python scripts/step_memory.py                      # lite0, googlenet, vgg16
    python scripts/step_memory.py --models vgg16 --sizes 256,512

Checks `tiling.PEAK_OVER_SAVED`, the ratio the tile planner assumes. The allocator's bytes in use
(glibc `mallinfo2`: heap plus mmapped blocks) are sampled after every operation of a step; the slope
of the peak between two image sizes, over the slope of the saved bytes (`tiling.saved_bytes_per_pixel`),
is the ratio: what does not grow with the image (weights, Python) cancels out. Each model is measured
as loaded and with its batch norms folded (`speed.fold_bn`, the default, what the tile planner sees).
Linux with glibc only.
Weights are untrained: memory does not depend on them.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
from typing import List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dreamvid.dream import make_objective
from dreamvid.fast import Plan, Stepper, prepare
from dreamvid.model import RANDOM, feature_net
from dreamvid.tiling import PEAK_OVER_SAVED, saved_bytes_per_pixel

LAYERS = {"lite0": ["blocks.10", "blocks.8.dw"], "googlenet": ["inception4c"], "vgg16": ["features.22"]}


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def _allocated():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2

    def allocated() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    return allocated


class PeakAfterEachOp(TorchDispatchMode):
    """The most bytes in use seen after any operation run inside it, above the level at its start."""

    def __init__(self, allocated):
        super().__init__()
        self.allocated = allocated
        self.base = self.peak = allocated()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.allocated())
        return out

    @property
    def bytes(self) -> int:
        return self.peak - self.base


def step_peak(stepper: Stepper, objective, side: int, allocated) -> int:
    x = torch.rand(1, 3, side, side)
    stepper(x, objective, step=1.5, jitter=8)  # warm-up: lazy initialisations are not the step's
    with PeakAfterEachOp(allocated) as mode:
        stepper(x, objective, step=1.5, jitter=8)
    return mode.bytes


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Peak memory of a dream step over the bytes autograd saves.")
    ap.add_argument("--models", default=",".join(LAYERS), help=f"comma-separated (default {','.join(LAYERS)})")
    ap.add_argument("--sizes", default="256,512", help="two square image sides in px (default 256,512)")
    args = ap.parse_args(argv)
    try:
        allocated = _allocated()
    except (OSError, AttributeError):
        print("step_memory: needs Linux with glibc 2.33 or later (mallinfo2)", file=sys.stderr)
        return 2
    small, large = (int(v) for v in args.sizes.split(","))
    print(f"tiling.PEAK_OVER_SAVED = {PEAK_OVER_SAVED}")
    for name in args.models.split(","):
        if name not in LAYERS:
            ap.error(f"unknown model {name!r}; choose from {', '.join(LAYERS)}")
        plain = feature_net(name, LAYERS[name], RANDOM, torch.device("cpu"))
        for label, net in (("", plain), ("folded", prepare(plain, Plan(fold_bn=True)))):  # the planner sees this
            objective = make_objective(net, LAYERS[name])
            saved = saved_bytes_per_pixel(net, LAYERS[name])
            stepper = Stepper(Plan())
            peaks = [step_peak(stepper, objective, side, allocated) for side in (small, large)]
            peak = (peaks[1] - peaks[0]) / (large**2 - small**2)
            print(f"{name:<10} {label:<6} saved {saved:7.0f} B/px  peak {peak:7.0f} B/px  peak/saved "
                  f"{peak / saved:.2f}  (step peaks {peaks[0] / 2**20:.0f} MiB at {small} px, "
                  f"{peaks[1] / 2**20:.0f} MiB at {large} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
