#!/usr/bin/env python
"""CPU time per ascent step at large sizes, whole frames against tiles of a few memory budgets.

    python scripts/cpu_tiles.py                                  # 1080p and 4K, lite0: auto, whole, 4/2/1 GiB
    python scripts/cpu_tiles.py --sizes 4k --budgets 0,2 --model googlenet

Each configuration runs in a process of its own (its peak resident memory is its own): one warm-up
step, then `--steps` timed steps of one octave at full size through dreamvid's dreamer (the default
speed levers, untrained weights). A budget of 0 dreams the frame whole, `auto` is dreamvid's own
choice (`speed.tile_memory=0`), any other is what `speed.tile_memory` gives automatic tiles (the tile
side each plans is printed). Reports wall and process
CPU seconds per step and the peak resident memory; docs/benchmarks.md ("CPU tiles") has the figures
behind the CPU's automatic tile budget (dreamvid.tiling.CPU_BUDGET).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160)}


def one(model: str, w: int, h: int, budget: float, steps: int, threads: int) -> dict:
    import torch

    from dreamvid.config import Config, DreamConfig, ModelConfig, SpeedConfig
    from dreamvid.model import RANDOM
    from dreamvid.pipeline.dreamer import dreamer

    torch.set_num_threads(threads)
    speed = SpeedConfig(tile=-1 if budget != 0 else 0, tile_memory=max(budget, 0.0))  # -1: automatic
    cfg = Config(device="cpu", width=w, height=h, progress=False, speed=speed,
                 model=ModelConfig(name=model, weights=RANDOM), dream=DreamConfig(octaves=1, iterations=1))
    dream_frame = dreamer(cfg, torch.device("cpu"))
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    s = {"octaves": 1, "octave_scale": 1.4, "iterations": 1, "step": 1.5, "jitter": 32, "guide_weight": 1.0}
    dream_frame(x, 0, s)  # the warm-up step (and the tile plan)
    t0, c0 = time.perf_counter(), time.process_time()
    dream_frame(x, 1, dict(s, iterations=steps))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"model": model, "size": f"{w}x{h}", "budget_gib": budget, "tile": dream_frame.tile_for(h, w),
            "s_per_step": wall / steps, "cpu_s_per_step": cpu / steps, "threads": threads,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1080p,4k")
    p.add_argument("--budgets", default="auto,0,4,2,1", help="GiB for automatic tiles; 0: the whole frame; auto: "
                                                             "dreamvid's automatic choice (speed.tile_memory=0)")
    p.add_argument("--model", default="lite0")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="write the rows here too")
    p.add_argument("--one", nargs=3, metavar=("W", "H", "GIB"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.model, int(a.one[0]), int(a.one[1]), float(a.one[2]), a.steps, a.threads)))
        return 0
    rows = []
    for size in a.sizes.split(","):
        w, h = SIZES[size] if size in SIZES else (int(v) for v in size.split("x"))
        for budget in a.budgets.split(","):
            budget = "-1" if budget == "auto" else budget
            r = subprocess.run([sys.executable, __file__, "--model", a.model, "--steps", str(a.steps), "--threads",
                                str(a.threads), "--one", str(w), str(h), budget], capture_output=True, text=True)
            if r.returncode:
                rows.append({"size": f"{w}x{h}", "budget_gib": float(budget), "error": r.stderr.strip()[-300:]})
            else:
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'size':>10} {'budget':>8} {'tile':>6} {'s/step':>8} {'CPU s/step':>10} {'x whole':>8} {'peak GiB':>9}")
    whole = {r["size"]: r["cpu_s_per_step"] for r in rows if r.get("budget_gib") == 0 and "error" not in r}
    for r in rows:
        if "error" in r:
            print(f"{r['size']:>10} {r['budget_gib']:>8} error: {r['error']}")
            continue
        name = {0: "whole", -1: "auto"}.get(r["budget_gib"], f"{r['budget_gib']:g} GiB")
        print(f"{r['size']:>10} {name:>8} {r['tile'] or '-':>6} {r['s_per_step']:>8.2f} {r['cpu_s_per_step']:>10.2f} "
              f"{whole.get(r['size'], math.nan) / r['cpu_s_per_step']:>7.2f}x {r['peak_rss_gib']:>9.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
