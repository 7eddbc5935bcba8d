"""How many CPU threads the network should use: seconds per frame of the demo zoom (and of a clip, whose
flow workers take cores too) at each thread count, on an idle machine and beside other busy programs.

    python scripts/threads_bench.py                      # threads 1..cores, load 0 and cores busy programs
    python scripts/threads_bench.py --threads 1 2 --load 0 1 2 --frames 3

Each busy program is a process multiplying matrices with NumPy in one thread, as a second render or a
compile beside dreamvid would. Each row is its own process (torch's thread pool is fixed once it runs).
Figures for docs/benchmarks.md ("CPU threads").
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time


def busy(stop) -> None:
    import numpy as np

    os.environ["OMP_NUM_THREADS"] = "1"
    a = np.random.default_rng(0).random((256, 256))
    while not stop.is_set():
        a = a @ a
        a /= a.max()


def one(mode: str, threads: int, frames: int, folder: str) -> float:
    """Seconds per frame of one render, in a process of its own (after its first frame: the warm-up)."""
    code = f"""
import json, sys, time
from hydra import compose, initialize_config_module
from dreamvid import pipeline
from dreamvid.cli import to_config
import dreamvid.pipeline.render as R
times = []
real = R.CheckpointWriter.add
def add(self, t, frame, state):
    times.append(time.perf_counter())
    return real(self, t, frame, state)
R.CheckpointWriter.add = add
over = ["device=cpu", "progress=false", "threads={threads}", "output={folder}/{mode}_{threads}_" + str(time.time()) + ".mp4"]
if "{mode}" == "video":
    over += ["mode=video", "input={folder}/clip.mp4", "max_frames={frames + 1}"]
else:
    over += ["frames={frames + 1}"]
with initialize_config_module(config_module="dreamvid.conf", version_base=None):
    cfg = to_config(compose(config_name="config", overrides=over))
pipeline.run(cfg)
print(json.dumps((times[-1] - times[0]) / (len(times) - 1)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=list(range(1, cores + 1)))
    p.add_argument("--load", type=int, nargs="+", default=[0, cores])
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["zoom", "video"])
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        if "video" in a.modes:  # the default size of a zoom frame, a clip that moves
            from dreamvid.video import ffmpeg_exe

            subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=384x216:rate=12",
                            "-frames:v", str(a.frames + 2), "-pix_fmt", "yuv420p", f"{folder}/clip.mp4"], check=True)
        print("| mode | busy programs | " + " | ".join(f"threads={t}" for t in a.threads) + " |")
        print("|---|---|" + "---|" * len(a.threads))
        for mode in a.modes:
            for load in a.load:
                stop = mp.Event()
                workers = [mp.Process(target=busy, args=(stop,), daemon=True) for _ in range(load)]
                for w in workers:
                    w.start()
                time.sleep(1.0)
                try:
                    row = [one(mode, t, a.frames, folder) for t in a.threads]
                finally:
                    stop.set()
                    for w in workers:
                        w.join()
                print(f"| {mode} | {load} | " + " | ".join(f"{s:.2f} s" for s in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
