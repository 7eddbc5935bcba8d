#!/usr/bin/env python
"""Frames per second of DeepDream: a naive PyTorch loop against dreamvid's path, per model and frame size.

    python scripts/bench.py                                   # GPU: 480p,720p,1080p,4k/tiled; CPU: tiny sizes
    python scripts/bench.py --models googlenet --sizes 1080p --speeds auto,fp32+graphs,bf16+cl+graphs
    python scripts/bench.py --device cpu --json bench.json

The naive loop is what public PyTorch DeepDream code does: the whole network run forward (no
truncation), a forward hook on the dream layer, a random roll drawn with Python's `random` each step,
the gradient read from `.grad` of a leaf image, fp32, eager. dreamvid's path is `zoom.dreamer`, the
function every mode dreams a frame with: the network cut after the deepest dream layer plus the
`speed.*` levers (`--speeds`: `auto`, or `+`-joined `fp32|bf16`, `cl`, `graphs`, `fold`, `tune`). Weights are untrained
(`model.weights=random`): the speed does not depend on them, and nothing is downloaded.

Effective TFLOP/s count the work dreamvid needs, once per configuration: FlopCounterMode over one step
(forward and backward to the image) per octave size on the meta device, times the iterations. Peak memory
is `torch.cuda.max_memory_reserved` on a GPU (the CUDA graphs' pools included); on a CPU the process's
peak RSS so far (a note, not per row).
A size ending in `/tiled` dreams in tiles sized for `--tile-memory` GiB (the naive loop runs untiled).
The end-to-end row (measured first) times `mode=video` (decode, flow, dream, encode) on a generated clip
against the time spent inside its dream calls, in the steady state (after the first frame) and with the
start-up. The JSON is rewritten after each configuration, and a SIGTERM (a time limit) ends the run with
the table and the JSON of the rows measured so far.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

try:
    import dreamvid  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dreamvid import dream as D
from dreamvid import fast
from dreamvid.config import Config, DreamConfig, ModelConfig, SpeedConfig
from dreamvid.model import RANDOM, EfficientNetLite, FeatureNet, load_backbone, resolve_device
from dreamvid.errors import DreamvidError
from dreamvid.settings import frame_values

# The dream layer of each model, as in the baseline of docs/benchmarks.md (inception4c, relu4_3; lite0's default).
LAYERS = {"lite0": ["blocks.10", "blocks.8.dw"], "lite2": ["blocks.14", "blocks.11.dw"],
          "googlenet": ["inception4c"], "vgg16": ["features.22"], "vgg19": ["features.25"],
          "inception_v3": ["Mixed_5d"], "resnet50": ["layer3"]}
NAMED_SIZES = {"360p": (640, 360), "480p": (854, 480), "540p": (960, 540), "720p": (1280, 720),
               "1080p": (1920, 1080), "1440p": (2560, 1440), "4k": (3840, 2160)}
DEFAULTS = {  # device type -> sizes, iterations, octaves, timed frames
    "cuda": ("480p,720p,1080p,4k/tiled", 10, 4, 5),
    "cpu": ("160x90,320x180", 2, 2, 3),
}
QUICK = {"cuda": ("480p,1080p", 4, 2, 2), "cpu": ("128x72", 1, 2, 1)}


def parse_size(token: str) -> Tuple[int, int, bool]:
    """'1080p' | '640x360' | either with '/tiled' -> (width, height, tiled)."""
    name, _, flag = token.strip().lower().partition("/")
    if flag not in ("", "tiled"):
        raise SystemExit(f"bench: size {token!r}: the only suffix is /tiled")
    if name in NAMED_SIZES:
        w, h = NAMED_SIZES[name]
    else:
        try:
            w, h = (int(v) for v in name.split("x"))
        except ValueError:
            raise SystemExit(f"bench: size {token!r}: use WIDTHxHEIGHT or one of {', '.join(NAMED_SIZES)}") from None
    return w, h, flag == "tiled"


def parse_speed(token: str) -> SpeedConfig:
    """'auto' | '+'-joined fp32|bf16, cl, graphs, fold, tune (cudnn.benchmark), eager -> a SpeedConfig.

    A lever not named is off: 'fp32+eager' is the plain path, 'bf16+cl+graphs+fold' everything.
    """
    token = token.strip().lower()
    if token == "auto":
        return SpeedConfig()
    parts = set(token.split("+"))
    unknown = parts - {"fp32", "bf16", "cl", "graphs", "eager", "fold", "tune"}
    if unknown:
        raise SystemExit(f"bench: speed {token!r}: unknown part {sorted(unknown)[0]!r}; "
                         f"use auto or e.g. bf16+cl+graphs")
    return SpeedConfig(precision="bf16" if "bf16" in parts else "fp32", channels_last="on" if "cl" in parts else "off",
                       graphs="on" if "graphs" in parts else "off", fold_bn="on" if "fold" in parts else "off",
                       cudnn_benchmark="on" if "tune" in parts else "off")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> Tuple[float, str]:
    """The peak since the last reset_memory: on a GPU the memory the caching allocator reserved, which
    holds the CUDA graphs' pools (a replay's tensors are not 'allocated'); on a CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 2**30, "gpu"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "rss"  # KiB on Linux


def resident_mib() -> float:
    """The process's resident memory now, MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


# ---------------------------------------------------------------------------------------------
# The naive loop.


def _layer_module(net: torch.nn.Module, layer: str) -> torch.nn.Module:
    if isinstance(net, EfficientNetLite):
        parts = layer.split(".")
        block = net.blocks[int(parts[1])]
        return block.bn1 if parts[-1] == "dw" else block  # dw: the depthwise output before ReLU6
    return net.get_submodule(layer)


class _Cut(Exception):
    """Raised by the forward hook of the last dream layer to reach: the rest of the network is not run."""


def naive_dreamer(name: str, layers: List[str], device: torch.device, cut: bool = False) -> Callable[..., torch.Tensor]:
    """dream(x, octaves, octave_scale, iterations, step, jitter) the way public PyTorch DeepDream code does.

    cut=False: the whole network runs forward, classifier included. cut=True: the forward pass stops at
    the deepest dream layer, as the careful public code does (a VGG sliced at relu4_3, Google's notebook's
    `forward(end=layer)`); here a hook raises once every dream layer has its activation.
    """
    net = copy.deepcopy(load_backbone(name, RANDOM)).to(device)  # its own copy: the hooks stay on it
    acts: Dict[str, torch.Tensor] = {}

    def keep(layer: str, output: torch.Tensor) -> None:
        acts[layer] = output
        if cut and len(acts) == len(layers):
            raise _Cut

    for layer in layers:
        _layer_module(net, layer).register_forward_hook(lambda m, i, o, layer=layer: keep(layer, o))
    if isinstance(net, EfficientNetLite):
        normalize = lambda x: x  # noqa: E731 - the Lite net normalises its input itself
    else:
        mean, std = ((0.5,) * 3, (0.5,) * 3) if name in ("googlenet", "inception_v3") else \
            ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        m, s = torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1)
        normalize = lambda x: (x - m) / s  # noqa: E731

    def dream(x: torch.Tensor, octaves: int, octave_scale: float, iterations: int, step: float, jitter: int):
        bases = [x]
        for _ in range(octaves - 1):
            bases.append(F.interpolate(bases[-1], scale_factor=1 / octave_scale, mode="bilinear", align_corners=False))
        detail = torch.zeros_like(bases[-1])
        for base in reversed(bases):
            detail = F.interpolate(detail, size=base.shape[-2:], mode="bilinear", align_corners=False)
            img = (base + detail).clamp(0, 1)
            for _ in range(iterations):
                ox, oy = random.randint(-jitter, jitter), random.randint(-jitter, jitter)
                img = torch.roll(img, (oy, ox), (2, 3)).detach()
                img.requires_grad = True
                acts.clear()
                try:
                    net(normalize(img))
                except _Cut:
                    pass
                loss = sum(acts[layer].pow(2).mean() for layer in layers)
                loss.backward()
                g = img.grad
                img.data += step / 255.0 * g / (g.abs().mean() + 1e-8)
                img = torch.roll(img.detach(), (-oy, -ox), (2, 3)).clamp(0, 1)
            detail = img - base
        return img

    return dream


# ---------------------------------------------------------------------------------------------
# Counting the work.


def flops_per_frame(name: str, layers: List[str], height: int, width: int, octaves: int, octave_scale: float,
                    iterations: int) -> float:
    """FLOPs of one dreamed frame: forward + backward to the image per step, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    # A copy on the meta device: shapes only, no memory, and the shared backbone stays where it is.
    net = copy.deepcopy(FeatureNet(load_backbone(name, RANDOM), layers, model_name=name)).to("meta")
    objective = D.make_objective(net, layers)
    total = 0
    for h, w in D.octave_sizes(height, width, octaves, octave_scale):
        x = torch.empty(1, 3, h, w, device="meta", requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            objective(x).backward()  # (FlopCounterMode's module tracking rejects autograd.grad)
        total += counter.get_total_flops()
    return float(total * iterations)


# ---------------------------------------------------------------------------------------------
# Timing.


def time_frames(dream_once: Callable[[int], torch.Tensor], device: torch.device,
                frames: int) -> Tuple[List[float], List[float]]:
    """(wall seconds, process CPU seconds) of each of `frames` calls, after the caller's warm-up."""
    wall, cpu = [], []
    for t in range(frames):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        dream_once(t)
        sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def bench_config(name: str, layers: List[str], w: int, h: int, tiled: bool, speed: SpeedConfig, args,
                 device: torch.device) -> Config:
    speed = copy.deepcopy(speed)
    if tiled:
        speed.tile, speed.tile_memory = -1, args.tile_memory
    return Config(device=device.type, width=w, height=h, seed=0, progress=False,
                  model=ModelConfig(name=name, weights=RANDOM, layers=list(layers)),
                  dream=DreamConfig(octaves=args.octaves, iterations=args.iterations), speed=speed)


def run_row(kind: str, dream_once: Callable[[int], torch.Tensor], warm: Callable[[], torch.Tensor],
            device: torch.device, frames: int) -> Dict[str, object]:
    reset_memory(device)
    try:
        warm()
        times, cpu = time_frames(dream_once, device, frames)
    except torch.cuda.OutOfMemoryError:
        reset_memory(device)
        return {"path": kind, "error": "out of memory"}
    peak, where = peak_memory_gib(device)
    seconds = statistics.median(times)  # the median: steady against other work on a shared machine
    row = {"path": kind, "s_per_frame": seconds, "fps": 1.0 / seconds, "times": times, "peak_gib": peak,
           "peak_of": where}
    if device.type == "cuda":
        row["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "cpu":  # CPU time does not count the waits for a core other work holds
        row["cpu_s_per_frame"] = statistics.median(cpu)
    return row


def bench_naive(name: str, x: torch.Tensor, args, device: torch.device, warm_iterations: int,
                cut: bool = False) -> Dict[str, object]:
    naive = naive_dreamer(name, LAYERS[name], device, cut)
    random.seed(0)
    return run_row("public (cut at the layer)" if cut else "naive (whole network)",
                   lambda t: naive(x, args.octaves, 1.4, args.iterations, 1.5, 32),
                   lambda: naive(x, args.octaves, 1.4, warm_iterations, 1.5, 32), device, args.frames)


def bench_speed(token: str, cfg: Config, x: torch.Tensor, s: dict, args, device: torch.device,
                warm_iterations: int) -> Tuple[Dict[str, object], Optional[torch.Tensor]]:
    """(row, frame 0) of dreamvid's path with the levers of `token`; its graphs go when this returns."""
    from dreamvid.pipeline.dreamer import dreamer

    p = fast.plan_from_config(cfg.speed, cfg.model.name, device)
    tuned = torch.backends.cudnn.benchmark
    try:
        dream_frame = dreamer(cfg, device)
        first: List[torch.Tensor] = []

        def once(t: int) -> torch.Tensor:
            out = dream_frame(x, t, s)
            if t == 0:
                first.append(out)
            return out

        warm_s = dict(s, iterations=warm_iterations)
        row = run_row(f"dreamvid {token}: {p.describe()}", once, lambda: dream_frame(x, 0, warm_s), device,
                      args.frames)
        row["plain"], row["tile"] = p.plain, dream_frame.tile_for(x.shape[-2], x.shape[-1])
        return row, (first[0] if first else None)
    finally:
        torch.backends.cudnn.benchmark = tuned  # the dreamer sets it process-wide: not for the next row


def dream_once(cfg: Config, x: torch.Tensor, s: dict, device: torch.device) -> torch.Tensor:
    from dreamvid.pipeline.dreamer import dreamer

    return dreamer(cfg, device)(x, 0, s)


def bench_model_size(name: str, w: int, h: int, tiled: bool, args, device: torch.device) -> List[Dict[str, object]]:
    layers = LAYERS[name]
    flops = flops_per_frame(name, layers, h, w, args.octaves, 1.4, args.iterations)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=gen).to(device)
    warm_iterations = args.iterations if device.type == "cuda" else 1  # graphs capture after warm-up steps
    rows: List[Dict[str, object]] = [bench_naive(name, x, args, device, warm_iterations),
                                     bench_naive(name, x, args, device, warm_iterations, cut=True)]
    # Frame 0 on the plain path (fp32 eager, in the tiles the row used), made when a row needs it: the
    # levers must make the dream faster, not different.
    plain_cfg = bench_config(name, layers, w, h, tiled, parse_speed("fp32+eager"), args, device)
    s = frame_values(plain_cfg.dream, "dream", 0, plain_cfg.fps)
    reference: Dict[int, torch.Tensor] = {}  # tile side (0: whole frame) -> the plain frame 0
    for token in args.speeds.split(","):
        cfg = bench_config(name, layers, w, h, tiled, parse_speed(token), args, device)
        row, frame0 = bench_speed(token, cfg, x, s, args, device, warm_iterations)
        reset_memory(device)
        if frame0 is not None:  # mean and largest difference from the plain path's frame, 0-255 levels
            tile = int(row["tile"])
            if not row["plain"] and tile not in reference:
                plain_cfg.speed.tile = tile
                reference[tile] = dream_once(plain_cfg, x, s, device)
            diff = (frame0 - (frame0 if row["plain"] else reference[tile])).abs() * 255
            row.update(diff_from_plain=float(diff.mean()), max_diff_from_plain=float(diff.max()))
        rows.append(row)
    base, public = rows[0].get("s_per_frame"), rows[1].get("s_per_frame")
    for row in rows:
        row.update(model=name, layers=layers, size=f"{w}x{h}", tiled=tiled, flops_per_frame=flops)
        if "s_per_frame" in row:
            row["tflops"] = flops / row["s_per_frame"] / 1e12
            row["speedup"] = base / row["s_per_frame"] if base else None
            row["speedup_public"] = public / row["s_per_frame"] if public else None
        for ref, key in ((rows[0], "cpu_speedup"), (rows[1], "cpu_speedup_public")):
            if "cpu_s_per_frame" in row and "cpu_s_per_frame" in ref:
                row[key] = ref["cpu_s_per_frame"] / row["cpu_s_per_frame"]
    reset_memory(device)
    return rows


def make_clip(path: str, w: int, h: int, frames: int) -> None:
    from dreamvid.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=25",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", "-c:v", "libx264", path], check=True)


def bench_end_to_end(name: str, w: int, h: int, args, device: torch.device) -> Dict[str, object]:
    """mode=video on a generated clip: wall time against the time spent in its dream calls."""
    from dreamvid.pipeline import clip

    inner = clip.dreamer
    calls: List[Tuple[float, float]] = []  # (start, end) of each dream call
    resident: List[float] = []  # the process's resident MiB after each

    def timed_dreamer(cfg, dev, report=None):
        dream_frame = inner(cfg, dev, report)

        def run(x, t, s, weight=None):
            sync(dev)
            t0 = time.perf_counter()
            out = dream_frame(x, t, s, weight)
            sync(dev)
            calls.append((t0, time.perf_counter()))
            resident.append(resident_mib())
            return out

        return run

    inner_flow, waited = clip.with_flow, [0.0]

    def timed_flow(*a, **k):  # the time the dreaming thread waits for the next frame and its flows
        it = inner_flow(*a, **k)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                waited[0] += time.perf_counter() - t0
            yield item

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "clip.mp4")
        make_clip(src, w, h, args.e2e_frames)
        cfg = bench_config(name, LAYERS[name], w, h, False, parse_speed(args.speeds.split(",")[0]), args, device)
        cfg.mode, cfg.input, cfg.output, cfg.width, cfg.height = "video", src, os.path.join(tmp, "out.mp4"), None, None
        reset_memory(device)
        clip.dreamer, clip.with_flow = timed_dreamer, timed_flow
        try:
            t0 = time.perf_counter()
            clip.run_video(cfg)
            t1 = time.perf_counter()
        finally:
            clip.dreamer, clip.with_flow = inner, inner_flow
    # Steady state: from the end of the first frame's dream (start-up, the first frame's graph capture and
    # its keyframe settings behind) to the end of the render, the encoder's finish and the audio included.
    frames, first_end = len(calls) - 1, calls[0][1]
    wall, dream = t1 - first_end, sum(b - a for a, b in calls[1:])
    peak, where = peak_memory_gib(device)
    return {"path": "end to end (mode=video)", "model": name, "layers": LAYERS[name], "size": f"{w}x{h}",
            "tiled": False, "frames": frames, "s_per_frame": wall / frames, "fps": frames / wall,
            "dream_only_fps": frames / dream, "fraction_of_dream_only": dream / wall,
            "startup_s": calls[0][0] - t0, "first_frame_s": first_end - calls[0][0],
            "fraction_with_startup": sum(b - a for a, b in calls) / (t1 - t0),
            "wait_for_frames_s": waited[0],  # the whole run: decode and flow not ready in time
            # host memory flat in clip length: resident MiB after frame 2 and after the last frame
            "resident_mib": (resident[1], resident[-1]),
            "peak_gib": peak, "peak_of": where}


# ---------------------------------------------------------------------------------------------
# Cadence: a full dream every N-th frame.


def frame_changes(frames: List[torch.Tensor]) -> List[float]:
    """Mean absolute change from each frame to the next, 0-255 levels (uint8 frames)."""
    return [float((b.float() - a.float()).abs().mean()) for a, b in zip(frames, frames[1:])]


def bench_cadence(name: str, w: int, h: int, args, device: torch.device) -> List[Dict[str, object]]:
    """A zoom and a clip at each cadence, in one run: frames per second and what it costs the look.

    Both at dreamvid's default dream and coherence settings (not the rows' --octaves and --iterations).
    Zoom: `--cadence-frames` frames of the default zoom motion and colour match; the first (a keyframe at every cadence,
    and the warm-up) is not timed, so that every cadence times the same number of frames and keyframes
    in proportion. keyframe_change: the largest change into a keyframe over the median change from frame
    to frame (1: a keyframe does not stand out). Video: mode=video on the end-to-end clip, its residual
    flicker and warp error by dreamvid.metrics against the source.
    """
    from dreamvid import color, metrics
    from dreamvid.images import clouds, to_tensor, to_uint8
    from dreamvid.pipeline import clip
    from dreamvid.pipeline.dreamer import dreamer
    from dreamvid.pipeline.zoom import zoom_frames

    rows: List[Dict[str, object]] = []
    speed = parse_speed(args.speeds.split(",")[0])
    x = to_tensor(clouds(h, w, seed=0), device)
    base = {}
    warm = bench_config(name, LAYERS[name], w, h, False, speed, args, device)
    warm.dream, warm.frames = DreamConfig(), 2
    for _ in zoom_frames(warm, x, dreamer(warm, device)):  # the first row is timed warm, like the others
        pass
    for n in (int(v) for v in args.cadences.split(",")):
        cfg = bench_config(name, LAYERS[name], w, h, False, speed, args, device)
        cfg.dream = DreamConfig()  # what a zoom dreams by default (the model's layers)
        cfg.frames, cfg.cadence, cfg.cadence_touch_up = args.cadence_frames, n, args.touch_up
        dream_frame = dreamer(cfg, device)
        frames, t0 = [], 0.0
        for t, (frame, _) in enumerate(zoom_frames(cfg, x, dream_frame)):
            sync(device)
            frames.append(torch.from_numpy(to_uint8(frame)))
            if t == 0:
                t0 = time.perf_counter()
        seconds = (time.perf_counter() - t0) / (len(frames) - 1)
        changes = frame_changes(frames)
        into_key = [changes[t - 1] for t in range(n, len(frames), n)]
        detail = [color.measures(f.numpy())["detail"] for f in frames[1:]]
        row = {"path": f"zoom cadence={n}", "cadence": n, "touch_up": args.touch_up, "model": name, "size": f"{w}x{h}",
               "frames": len(frames), "s_per_frame": seconds, "fps": 1.0 / seconds,
               "median_change": statistics.median(changes), "keyframe_change": max(into_key) / statistics.median(changes),
               "detail_low": min(detail) / statistics.median(detail)}
        base.setdefault("zoom", row["fps"])
        row["fps_x"] = row["fps"] / base["zoom"]
        rows.append(row)
    if args.no_e2e:
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "clip.mp4")
        make_clip(src, w, h, args.e2e_frames)
        for n in (int(v) for v in args.cadences.split(",")):
            cfg = bench_config(name, LAYERS[name], w, h, False, speed, args, device)
            cfg.dream = DreamConfig()
            out = os.path.join(tmp, f"cadence{n}.mp4")
            cfg.mode, cfg.input, cfg.output, cfg.width, cfg.height = "video", src, out, None, None
            cfg.cadence, cfg.cadence_touch_up = n, args.touch_up
            t0 = time.perf_counter()
            clip.run_video(cfg)
            seconds = (time.perf_counter() - t0) / args.e2e_frames
            m = metrics.coherence(out, src)
            row = {"path": f"video cadence={n}", "cadence": n, "touch_up": args.touch_up, "model": name,
                   "size": f"{w}x{h}", "frames": args.e2e_frames, "s_per_frame": seconds, "fps": 1.0 / seconds,
                   "flicker": m["flicker"], "warp_error_ratio": m["warp_error_ratio"], "strength": m["strength"]}
            base.setdefault("video", row["fps"])
            row["fps_x"] = row["fps"] / base["video"]
            rows.append(row)
    return rows


def print_cadence(rows: List[Dict[str, object]]) -> None:
    rows = [r for r in rows if "cadence" in r and "error" not in r]
    if not rows:
        return
    print()
    head = (f"{'model':<10} {'size':>10} {'path':<18} {'touch-up':>8} {'s/frame':>8} {'fps':>7} {'x cadence 1':>11} "
            f"{'keyframe change':>15} {'detail low':>10} {'flicker':>8} {'warp err':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        key = f"{r['keyframe_change']:.2f}x" if "keyframe_change" in r else ""
        low = f"{r['detail_low']:.2f}x" if "detail_low" in r else ""
        flicker = f"{r['flicker']:.3f}" if "flicker" in r else ""
        warp_err = f"{r['warp_error_ratio']:.2f}x" if "warp_error_ratio" in r else ""
        print(f"{r['model']:<10} {r['size']:>10} {r['path']:<18} {r['touch_up']:>8} {r['s_per_frame']:>8.3f} "
              f"{r['fps']:>7.2f} {r['fps_x']:>10.2f}x {key:>15} {low:>10} {flicker:>8} {warp_err:>8}")
    print("keyframe change: the largest frame-to-frame change into a keyframe over the median change (zoom); "
          "detail low: the least detail (high-frequency energy) of a frame over the median frame's (zoom); "
          "flicker: residual flicker against the source (video, dreamvid.metrics; 0: the dream moves with the "
          "scene); warp err: the output's warp error over the source's")


# ---------------------------------------------------------------------------------------------


def hardware(device: torch.device) -> Dict[str, object]:
    info: Dict[str, object] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                               "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def print_table(rows: List[Dict[str, object]]) -> None:
    cpu = any("cpu_s_per_frame" in r for r in rows)
    head = (f"{'model':<10} {'size':>10} {'path':<44} {'s/frame':>8} {'fps':>7} {'x naive':>7} {'x public':>8} "
            f"{'TFLOP/s':>8} {'peak GiB':>9} {'vs plain':>10}")
    if cpu:
        head += f" {'CPU s':>7} {'x naive':>7} {'x public':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "cadence" in r:
            continue  # in their own table
        size = str(r.get("size", "")) + (" tiled" if r.get("tiled") else "")
        if "error" in r:
            print(f"{r.get('model', ''):<10} {size:>10} {r['path']:<44} {r['error']}")
            continue
        speedup = f"{r['speedup']:.2f}x" if r.get("speedup") else ""
        public = f"{r['speedup_public']:.2f}x" if r.get("speedup_public") else ""
        tflops = f"{r['tflops']:.3f}" if "tflops" in r else ""
        peak = f"{r['peak_gib']:.2f}" + ("" if r["peak_of"] == "gpu" else "*")
        diff = f"{r['diff_from_plain']:.3f}/{r['max_diff_from_plain']:.1f}" if "diff_from_plain" in r else ""
        line = (f"{r['model']:<10} {size:>10} {r['path'][:44]:<44} {r['s_per_frame']:>8.3f} {r['fps']:>7.2f} "
                f"{speedup:>7} {public:>8} {tflops:>8} {peak:>9} {diff:>10}")
        if cpu and "cpu_speedup" in r:
            line += f" {r['cpu_s_per_frame']:>7.3f} {r['cpu_speedup']:>6.2f}x"
            if "cpu_speedup_public" in r:
                line += f" {r['cpu_speedup_public']:>7.2f}x"
        print(line)
        if "fraction_of_dream_only" in r:
            note = f"  dream-only {r['dream_only_fps']:.2f} fps; end to end at"
            print(f"{'':<10} {'':>10} {note:<44} {100 * r['fraction_of_dream_only']:.0f}% of it "
                  f"(frames 2-{r['frames'] + 1}; with the {r['startup_s'] + r['first_frame_s']:.1f} s of "
                  f"start-up and first frame: {100 * r['fraction_with_startup']:.0f}%; waited "
                  f"{1000 * r['wait_for_frames_s'] / (r['frames'] + 1):.1f} ms/frame for decode and flow; "
                  f"resident memory {r['resident_mib'][0]:.0f} MiB after frame 2, {r['resident_mib'][1]:.0f} "
                  f"after frame {r['frames'] + 1})")
    if any(r.get("peak_of") == "gpu" for r in rows):
        print("peak GiB: the most GPU memory the allocator reserved (CUDA graph pools included)")
    print("vs plain: frame 0 against the plain path's (fp32 eager, same tiles): mean/largest difference, 0-255 levels")
    if any(r.get("peak_of") == "rss" for r in rows):
        print("* CPU: the process's peak resident memory so far, not per row")
    if cpu:
        print("CPU s: process CPU time per frame (all threads), steadier than the wall time on a shared machine")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Time the naive DeepDream loop against dreamvid's path.")
    ap.add_argument("--models", default="lite0,googlenet,vgg16", help="comma-separated (default lite0,googlenet,vgg16)")
    ap.add_argument("--sizes", help="comma-separated WIDTHxHEIGHT or 480p/720p/1080p/4k, /tiled to tile "
                                    "(default GPU: 480p,720p,1080p,4k/tiled; CPU: 160x90,320x180)")
    ap.add_argument("--iterations", type=int, help="iterations per octave (default GPU 10, CPU 2)")
    ap.add_argument("--octaves", type=int, help="octaves (default GPU 4, CPU 2)")
    ap.add_argument("--frames", type=int, help="timed frames per row, after one warm-up frame; the median "
                                                       "is reported (default GPU 5, CPU 3)")
    ap.add_argument("--speeds", default="auto", help="dreamvid variants, comma-separated: auto or e.g. "
                                                     "fp32+graphs,bf16+cl+graphs (default auto)")
    ap.add_argument("--tile-memory", type=float, default=4.0, help="GiB for /tiled sizes (default 4)")
    ap.add_argument("--e2e-frames", type=int, help="frames of the end-to-end clip (default GPU 60, CPU 20)")
    ap.add_argument("--e2e-size", help="WIDTHxHEIGHT or 480p/720p/1080p of the end-to-end clip "
                                       "(default GPU 1080p, else the first of --sizes)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end (mode=video) row")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--threads", type=int, help="CPU threads (default all cores; on a busy machine 1 is steadier)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer iterations: a smoke test")
    ap.add_argument("--json", help="also write the rows and the hardware as JSON to this path")
    ap.add_argument("--cadences", default="1,2,3,4", help="cadences to time on a zoom and on the end-to-end clip "
                                                          "(default 1,2,3,4; empty: none)")
    ap.add_argument("--touch-up", type=int, default=None, help="cadence_touch_up of the cadence rows "
                                                               "(default: dreamvid's default)")
    ap.add_argument("--cadence-frames", type=int, help="frames of the cadence zoom (default GPU 49, CPU 25)")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    sizes, iterations, octaves, frames = (QUICK if args.quick else DEFAULTS)[kind]
    args.sizes = args.sizes or sizes
    args.iterations = args.iterations or iterations
    args.octaves = args.octaves or octaves
    args.frames = args.frames or frames
    args.e2e_frames = max(2, args.e2e_frames or (60 if kind == "cuda" else 20))
    args.e2e_size = args.e2e_size or ("1080p" if kind == "cuda" and not args.quick else None)
    args.cadence_frames = max(2, args.cadence_frames or (49 if kind == "cuda" else 25))
    args.touch_up = Config().cadence_touch_up if args.touch_up is None else args.touch_up
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in LAYERS]
    if bad:
        ap.error(f"unknown model {bad[0]!r}; choose from {', '.join(LAYERS)}")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    try:  # settings that no row could run with end the run before it starts
        for token in args.speeds.split(","):
            fast.plan_from_config(parse_speed(token), models[0], device)
    except DreamvidError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    rows: List[Dict[str, object]] = []
    info = hardware(device)

    def write_json(complete: bool) -> None:
        if args.json:
            settings = {k: v for k, v in vars(args).items() if k != "json"}
            part = args.json + ".part"  # then renamed: a reader never sees half a file
            with open(part, "w") as f:
                json.dump({"hardware": info, "settings": settings, "seconds": time.perf_counter() - started,
                           "complete": complete, "rows": rows}, f, indent=1, default=str)
            os.replace(part, args.json)

    def stop(signum, _frame):  # a time limit's SIGTERM: keep the rows measured so far
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    complete = False
    try:
        if not args.no_e2e:  # first: the one row of its kind
            w, h, _ = parse_size(args.e2e_size) if args.e2e_size else sizes[0]
            try:
                rows.append(bench_end_to_end(models[0], w, h, args, device))
            except DreamvidError as e:
                rows.append({"model": models[0], "size": f"{w}x{h}", "path": "end to end (mode=video)",
                             "error": str(e)})
            write_json(False)
        for name in models:
            for w, h, tiled in sizes:
                try:
                    rows += bench_model_size(name, w, h, tiled, args, device)
                except DreamvidError as e:  # one configuration failing keeps the others' rows
                    rows.append({"model": name, "size": f"{w}x{h}", "tiled": tiled, "path": "-", "error": str(e)})
                    reset_memory(device)
                write_json(False)
                print(f"  [{time.perf_counter() - started:6.1f} s] {name} {w}x{h}{' tiled' if tiled else ''}",
                      file=sys.stderr)
        if args.cadences.strip():  # on the first model, at the end-to-end clip's size
            w, h, _ = parse_size(args.e2e_size) if args.e2e_size else sizes[0]
            rows += bench_cadence(models[0], w, h, args, device)
            write_json(False)
        complete = True
    finally:
        print(f"device {device} ({info.get('gpu', info['machine'])}), torch {info['torch']}, "
              f"{info['cpu_threads']} threads; {args.octaves} octaves x {args.iterations} iterations, median of "
              f"{args.frames} timed frame(s) per row; {time.perf_counter() - started:.0f} s in all"
              + ("" if complete else "; STOPPED EARLY: the rows measured so far"))
        print_table(rows)
        print_cadence(rows)
        write_json(complete)
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
