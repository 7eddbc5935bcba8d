"""Dream frames too large for the GPU in overlapping tiles; fall back to tiles after an out-of-memory error.

A tiled step is the untiled step of `dream.dream_step` with the gradient assembled from tiles: the jitter
roll as usual, then each tile's gradient computed on its own, the tiles blended with weights that fade out
towards their inner edges (where a tile lacks the context the whole image would give), the result
normalised by the mean over the whole image, stepped, rolled back. All tiles of a step have one size, so
the objective (a mean over the tile's activations) gives every tile's gradient the same scale, and for a
per-pixel objective tiled and untiled steps are equal.

The tile grid starts at a random phase each step, drawn from the frame's generator, so the blend zones
move from step to step and no seam builds up. The grid moves rather than the picture: a larger roll
would carry the roll's wrap-around edge into the middle of the picture, a seam of its own.
"""
from __future__ import annotations

import gc
import math
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .dream import Objective, dream_step, make_objective
from .fast import Stepper, jitter_offsets, update
from .errors import DreamvidError

StepFn = Callable[..., torch.Tensor]

# Peak memory of a step over the bytes autograd saves in the forward pass (both per input pixel). On a
# CPU, sampling the allocator after every operation of a step at 256 and 512 px, the slope of the peak
# was 0.92x the saved bytes for lite0, 1.06x for GoogLeNet, 1.10x for VGG16, and with the batch norms
# folded (what the planner sees by default) 1.03x and 1.08x (2026-11-29, scripts/step_memory.py): the
# backward frees saved tensors as it makes gradients. 1.5 leaves room for the CUDA caching allocator's rounding
# and fragmentation; cuDNN workspaces come out of RESERVE. scripts/bench.py prints the 4K tiled rows'
# GPU peak against their budget.
PEAK_OVER_SAVED = 1.5
RESERVE = 256 << 20  # bytes kept free for cuDNN workspaces and the allocator's rounding
FREE_FRACTION = 0.8  # auto tiles plan for this fraction of the free GPU memory
FULL_SIZE_BUFFERS = 12  # image-sized fp32 tensors alive during a frame: pyramid, detail, roll, blend sums
GRANULE = 32  # tile sides are multiples of this (every net here downsamples by at most 32)
# On a CPU more memory is slower, not only scarcer: each step's tensors are fresh pages the kernel must
# fault in, and they fall out of the caches. Dreamed whole, a 4K lite0 step took 21.2 s (8.4 GiB
# resident) against 13.0 s in the tiles of a 4 GiB plan and 8.6 s in those of a 2 GiB plan (672 px), though
# tiles overlap and recompute their edges; 1080p whole took 1.4-1.7 s (2.7 GiB), faster than any tiling
# (1 GiB: 2.3 s; 2 GiB: 1024 px tiles, half of each outside the frame's stride, 5.3 s). So automatic
# tiles on a CPU dream a frame whole when the plan fits it in CPU_WHOLE (1080p does), and otherwise plan
# for CPU_TILES (scripts/cpu_tiles.py; docs/benchmarks.md, "CPU tiles").
CPU_WHOLE = 4 << 30
CPU_TILES = 2 << 30
# Steps whose memory is held at once with CUDA graphs: the graphs' shared pool keeps a captured step's
# intermediates reserved while the next shape (a larger octave) warms up eagerly beside it.
GRAPHED_STEPS = 2


def tile_starts(length: int, tile: int, overlap: int, phase: int = 0) -> List[int]:
    """Start positions of equal tiles covering [0, length), neighbours overlapping by at least `overlap`.

    The grid is shifted by `phase` (0 <= phase < tile - overlap) and clamped to the image, so that every
    tile has the same size; a tile of `length` or more gives the single start 0.
    """
    if tile >= length:
        return [0]
    stride = tile - overlap
    if stride < 1:
        raise DreamvidError(f"speed.tile_overlap={overlap} must be smaller than the tile ({tile} px)")
    starts, s = [], phase % stride - stride
    while True:
        starts.append(min(max(s, 0), length - tile))
        if s + tile >= length:
            break
        s += stride
    return sorted(set(starts))


def _ramp(size: int, fade_start: bool, fade_end: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D weights of one tile: 1 inside, falling linearly to ~0 over `overlap` px at faded edges."""
    i = torch.arange(size, dtype=torch.float32, device=device)  # made on the device: no copy, no sync
    w = torch.ones(size, device=device)
    ramp = max(overlap, 1)
    if fade_start:
        w = torch.minimum(w, (i + 0.5) / ramp)
    if fade_end:
        w = torch.minimum(w, (size - i - 0.5) / ramp)
    return w


def tiled_gradient(x: torch.Tensor, objective: Objective, *, tile: int, overlap: int,
                   phase: Tuple[int, int] = (0, 0),
                   gradient: Optional[Callable[[torch.Tensor, Objective], torch.Tensor]] = None) -> torch.Tensor:
    """The gradient of x (B, 3, H, W) assembled from overlapping tiles of tile x tile px, blended."""
    grad = gradient or _plain_gradient
    h, w = x.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    ys = tile_starts(h, th, overlap, phase[0])
    xs = tile_starts(w, tw, overlap, phase[1])
    acc = torch.zeros_like(x, memory_format=torch.contiguous_format)
    total = x.new_zeros(1, 1, h, w)
    for iy, y0 in enumerate(ys):
        wy = _ramp(th, iy > 0, iy < len(ys) - 1, overlap, x.device)
        for ix, x0 in enumerate(xs):
            wx = _ramp(tw, ix > 0, ix < len(xs) - 1, overlap, x.device)
            weight = (wy[:, None] * wx[None, :])[None, None]
            g = grad(x[..., y0:y0 + th, x0:x0 + tw], objective)
            acc[..., y0:y0 + th, x0:x0 + tw].addcmul_(g, weight)
            total[..., y0:y0 + th, x0:x0 + tw].add_(weight)
    return acc / total


def _plain_gradient(x: torch.Tensor, objective: Objective) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(leaf), leaf)
    return g


def tiled_step(x: torch.Tensor, objective: Objective, *, step: float = 1.5, jitter: int = 32,
               generator: Optional[torch.Generator] = None, tile: int = 512, overlap: int = 64,
               stepper: Optional[Stepper] = None, shift_grid: bool = True) -> torch.Tensor:
    """`dream.dream_step` with the gradient computed in tiles; an image that fits one tile takes the plain step.

    stepper: the fast path whose gradient each tile uses (None: plain fp32 autograd).
    """
    h, w = x.shape[-2:]
    if tile >= h and tile >= w:
        if stepper is not None:
            return stepper(x, objective, step=step, jitter=jitter, generator=generator)
        return dream_step(x, objective, step=step, jitter=jitter, generator=generator)
    dy, dx = jitter_offsets(jitter, generator)
    phase = (0, 0)
    if shift_grid:
        stride = max(1, tile - overlap)
        phase = tuple(int(v) for v in torch.randint(0, stride, (2,), generator=generator))
    xr = torch.roll(x.detach(), (dy, dx), (2, 3))
    g = tiled_gradient(xr, objective, tile=tile, overlap=overlap, phase=phase,
                       gradient=stepper.gradient if stepper is not None else None)
    return torch.roll(update(xr, g, step / 255.0), (-dy, -dx), (2, 3))


def tiled(tile: int, overlap: int, stepper: Optional[Stepper] = None) -> StepFn:
    """A step function for `dream.dream(..., step_fn=...)` that works in tiles of `tile` px."""

    def step_fn(x, objective, *, step=1.5, jitter=32, generator=None):
        return tiled_step(x, objective, step=step, jitter=jitter, generator=generator, tile=tile,
                          overlap=overlap, stepper=stepper)

    return step_fn


# ---------------------------------------------------------------------------------------------
# How large a tile fits.


def saved_bytes_per_pixel(model: nn.Module, layers: Sequence[str], precision: str = "fp32",
                          probe: int = 96) -> float:
    """Bytes autograd keeps per input pixel for one step's backward, from two small probe passes.

    The slope between two probe sizes: the weights, saved at any size, cancel out.
    """
    objective = make_objective(model, layers)
    device = next(model.parameters()).device
    sizes, totals = (probe, 2 * probe), []
    for side in sizes:
        seen: Dict[Tuple[int, int], int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
            return t

        x = torch.rand(1, 3, side, side, device=device, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = objective(x)
        del loss
        totals.append(sum(seen.values()))
    return max((totals[1] - totals[0]) / (sizes[1] ** 2 - sizes[0] ** 2), 1.0)


def plan_tile(bytes_per_pixel: float, height: int, width: int, budget: float, *,
              overlap: int = 64, min_tile: int = 0, steps: int = 1) -> int:
    """The tile side for a frame: 0 when the whole frame fits `budget` bytes, else the largest that fits.

    budget covers everything: the full-size buffers of the frame are taken off first. steps: how many
    steps' memory is held at once (GRAPHED_STEPS with CUDA graphs).
    """
    fixed = FULL_SIZE_BUFFERS * 3 * height * width * 4 + RESERVE
    per_pixel = bytes_per_pixel * PEAK_OVER_SAVED * steps
    if fixed + per_pixel * height * width <= budget:
        return 0
    min_tile = max(min_tile, 2 * overlap + GRANULE, 2 * GRANULE)
    side = math.sqrt(max(budget - fixed, 0.0) / per_pixel)
    tile = int(side) // GRANULE * GRANULE
    if tile < min_tile:
        raise DreamvidError(f"a {width}x{height} frame needs about {(fixed + per_pixel * min_tile**2) / 2**30:.1f} "
                            f"GiB even in {min_tile} px tiles, more than the {budget / 2**30:.1f} GiB at hand: "
                            f"lower width/height, or free some memory")
    return tile


def auto_tile_size(model: nn.Module, layers: Sequence[str], height: int, width: int,
                   device: torch.device | str, *, budget: Optional[float] = None, overlap: int = 64,
                   precision: str = "fp32", graphs: bool = False) -> int:
    """The tile side for a height x width frame on `device`: 0 for no tiling.

    The budget is FREE_FRACTION of the free memory unless given: the GPU's (`torch.cuda.mem_get_info`), so
    that a frame too large for memory is tiled, or refused with the reason when even small tiles do not
    fit. On a CPU, within FREE_FRACTION of the host's available memory: whole up to CPU_WHOLE, else tiles
    planned for CPU_TILES (what measured fastest).
    """
    device = torch.device(device)
    bpp = saved_bytes_per_pixel(model, layers, precision)
    steps = GRAPHED_STEPS if graphs and device.type == "cuda" else 1
    if budget is None and device.type != "cuda":  # the CPU: the size that measured fastest, if memory allows
        free = FREE_FRACTION * available_host_memory()
        for cap in (CPU_WHOLE, CPU_TILES):
            try:
                tile = plan_tile(bpp, height, width, min(free, cap), overlap=overlap)
            except DreamvidError:  # a frame whose own buffers outgrow the cap: tiles in all the memory there is
                break
            if tile == 0 or cap == CPU_TILES:
                return tile
        return plan_tile(bpp, height, width, free, overlap=overlap)
    if budget is None:
        free, _total = torch.cuda.mem_get_info(device)
        budget = FREE_FRACTION * free
    return plan_tile(bpp, height, width, budget, overlap=overlap, steps=steps)


# ---------------------------------------------------------------------------------------------
# Choosing each frame's step, and retrying a frame in tiles after an out-of-memory error.


def available_host_memory() -> float:
    """Bytes of host memory available now (Linux: MemAvailable; elsewhere free physical pages, or where
    the system does not say (macOS), half of the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    for name, share in (("SC_AVPHYS_PAGES", 1.0), ("SC_PHYS_PAGES", 0.5)):
        try:
            return share * float(os.sysconf(name) * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            continue
    return float("inf")  # unknown: frames are dreamed whole


def _free_cached_memory() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class FrameSteps:
    """Each frame's step function: whole frames, fixed tiles or tiles sized from free memory; a GPU
    out-of-memory error retries the frame in tiles (and keeps tiling), with one warning per run.

    tile: 0 whole frames, -1 auto from free memory, N tiles of N px. budget: bytes auto tiles may use
    (None: FREE_FRACTION of the free memory).
    """

    def __init__(self, stepper: Stepper, model: nn.Module, layers: Sequence[str], device: torch.device | str, *,
                 tile: int = -1, overlap: int = 64, budget: Optional[float] = None):
        if tile < -1:
            raise DreamvidError(f"speed.tile must be -1 (auto), 0 (whole frames) or a size in px, got {tile}")
        if overlap < 0:
            raise DreamvidError(f"speed.tile_overlap must be 0 or more, got {overlap}")
        if tile > 0 and tile <= overlap:
            raise DreamvidError(f"speed.tile={tile} must be larger than speed.tile_overlap={overlap}")
        self.stepper, self.model, self.layers = stepper, model, list(layers)
        self.device = torch.device(device)
        self.tile, self.overlap, self.budget = tile, overlap, budget
        self._tiles: Dict[Tuple[int, int], int] = {}  # frame size -> tile side (0: whole)
        self.warned = False

    def tile_for(self, height: int, width: int) -> int:
        """The tile side used for a height x width frame (0: whole frame)."""
        key = (height, width)
        if key not in self._tiles:
            if self.tile == -1:
                self._tiles[key] = self._auto_tile(height, width)
            else:
                self._tiles[key] = self.tile
        return self._tiles[key]

    def _auto_tile(self, height: int, width: int) -> int:
        p = self.stepper.plan
        return auto_tile_size(self.model, self.layers, height, width, self.device, budget=self.budget,
                              overlap=self.overlap, precision=p.precision, graphs=p.graphs)

    def step_fn(self, height: int, width: int) -> StepFn:
        tile = self.tile_for(height, width)
        return self.stepper if tile == 0 else tiled(tile, self.overlap, self.stepper)

    def run(self, dream: Callable[[StepFn], torch.Tensor], height: int, width: int) -> torch.Tensor:
        """dream(step_fn) -> frame, retried in ever smaller tiles while the GPU runs out of memory.

        `dream` must start the frame afresh on each call (its own generator), so a retry is exact.
        """
        tile = self.tile_for(height, width)
        while True:
            try:
                return dream(self.stepper if tile == 0 else tiled(tile, self.overlap, self.stepper))
            except torch.cuda.OutOfMemoryError:
                pass
            # Out of the except block: its traceback held the failed frame's tensors, so only now can
            # their memory be freed and the free memory measured for the next tile size.
            self.stepper.reset()
            gc.collect()
            _free_cached_memory()
            smaller = self._smaller_tile(tile, height, width)
            if smaller is None:
                where = f"even in {tile} px tiles" if tile else "too small to tile"
                raise DreamvidError(f"GPU out of memory dreaming a {width}x{height} frame, {where}: "
                                    f"lower width/height or free GPU memory")
            if not self.warned:
                self.warned = True
                warnings.warn(f"GPU out of memory on a {width}x{height} frame: dreaming in {smaller} px tiles "
                              f"from now on (speed.tile={smaller} starts tiled)", stacklevel=2)
            tile = self._tiles[(height, width)] = smaller

    def _smaller_tile(self, tile: int, height: int, width: int) -> Optional[int]:
        """A tile that should fit after `tile` (0: whole frame) did not; None below the smallest useful tile."""
        floor = max(2 * self.overlap + GRANULE, 2 * GRANULE)
        candidate = 0
        if tile == 0 and self.device.type == "cuda":
            try:
                candidate = self._auto_tile(height, width)
            except DreamvidError:  # the estimate sees no room even for small tiles: try halving all the same
                candidate = 0
        if candidate == 0:  # the estimate thought it fits: halve what failed
            side = max(height, width) if tile == 0 else tile
            candidate = (side // 2) // GRANULE * GRANULE
        if tile > 0:
            candidate = min(candidate, (tile // 2) // GRANULE * GRANULE)
        return candidate if candidate >= floor else None
