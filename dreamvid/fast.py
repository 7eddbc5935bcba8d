"""The fast path: the dream step of `dream.dream_step`, with the levers that make it quick on a GPU.

The levers, chosen per model and device by `plan` (`speed.*` in the config):
- bf16 autocast for the network; the image, its gradient and the update stay fp32.
- channels_last for the network's weights and input (the layout tensor cores and oneDNN read directly).
- batch norms folded into the convolutions before them.
- CUDA graphs: the whole step of one octave (forward, backward to the image, normalised update, clamp)
  captured once per image shape and replayed; all graphs share one memory pool, so the graph memory is
  that of the largest octave, not the sum over octaves. The jitter roll happens outside the graph and the
  step size lives in a device scalar, so one capture serves every iteration of every frame.
On a CPU `auto` is fp32 with channels_last and folded batch norms (bf16 autocast there was slower).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from .dream import TINY, Objective, dream_step
from .errors import DreamvidError

PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")

# Seconds per 1080p frame (4 octaves x 10 iterations) on one H200, from the plain fp32 eager loop and
# its variants (measured 2026-11-28, docs/benchmarks.md). None: not measured yet; scripts/bench.py measures them.
#                     fp32 eager  bf16+cl eager  fp32 graphed  bf16+cl graphed
MEASURED: Dict[str, Tuple[Optional[float], ...]] = {
    "googlenet": (0.379, None, 0.153, None),  # launch-bound: 720p takes 0.339 s eager, 0.090 s graphed
    "vgg16": (0.375, 0.204, None, 0.184),  # compute-bound: 117 -> 215 -> 238 TFLOP/s
    "efficientnet_b0": (0.467, None, None, None),
}
# What `auto` picks on CUDA, after the table. Graphs for every model: the launch-bound nets gained
# 2.9-4.4x, VGG16 a further 10%. bf16 + channels_last only where it was measured faster, the VGGs
# (1.8x eager); on the small nets it was slower in eager mode (the layout and cast kernels add launches
# to a launch-bound loop), and whether it pays once graphed is still to be measured, so they stay fp32.
BF16_MODELS = ("vgg16", "vgg19")
# Models for which `auto` turns on torch.backends.cudnn.benchmark on CUDA: cuDNN times every algorithm
# for each octave's (fixed) shapes in the warm-up steps and keeps the fastest. Unmeasured so far, so none:
# the benchmark's `tune` rows measure it (docs/benchmarks.md).
CUDNN_BENCHMARK_MODELS: Tuple[str, ...] = ()
# Eager steps per shape before its graph is captured: the lazy initialisations (cuDNN algorithm choice,
# cuBLAS workspaces, autograd's device threads) must happen outside the capture. Their results are used.
WARMUP_STEPS = 3
# Graphs kept at most, the least recently replayed dropped first: a normal run needs one or two per
# octave, but a scheduled octave_scale gives the smaller octaves a new size every frame, and each
# shape's graph holds its input and output (and its share of the pool) until dropped.
MAX_GRAPHS = 32


@dataclass(frozen=True)
class Plan:
    """Which levers a run uses."""

    precision: str = "fp32"  # fp32 | bf16 (network under autocast)
    channels_last: bool = False
    graphs: bool = False
    fold_bn: bool = False  # batch norms folded into the convolutions before them
    cudnn_benchmark: bool = False  # cuDNN times its algorithms for each octave's shapes (process-wide)

    @property
    def plain_step(self) -> bool:
        """The step is `dream.dream_step` itself (the network may still be folded)."""
        return self.precision == "fp32" and not self.channels_last and not self.graphs

    @property
    def plain(self) -> bool:
        """No lever at all: the reference the others are compared with."""
        return self.plain_step and not self.fold_bn and not self.cudnn_benchmark

    def describe(self) -> str:
        if self.plain:
            return "fp32 eager (plain)"
        return " + ".join([self.precision] + ["channels_last"] * self.channels_last + ["graphs"] * self.graphs
                          + ["folded BN"] * self.fold_bn + ["cudnn.benchmark"] * self.cudnn_benchmark)


def _choice(value: str, choices: Tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise DreamvidError(f"speed.{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def plan(model_name: str, device: torch.device | str, *, precision: str = "auto", graphs: str = "auto",
         channels_last: str = "auto", fold_bn: str = "auto", cudnn_benchmark: str = "auto") -> Plan:
    """The levers for `model_name` on `device`; `auto` follows the measurements in MEASURED.

    Folding batch norms is exact up to float rounding and removes a pass over every activation forward
    and backward, so `auto` folds everywhere.
    """
    _choice(precision, PRECISIONS, "precision")
    _choice(graphs, SWITCHES, "graphs")
    _choice(channels_last, SWITCHES, "channels_last")
    _choice(fold_bn, SWITCHES, "fold_bn")
    _choice(cudnn_benchmark, SWITCHES, "cudnn_benchmark")
    cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda and model_name in BF16_MODELS else "fp32"
    if channels_last == "auto":
        # CUDA: measured as a pair with bf16. CPU: oneDNN's convolutions run faster in NHWC for every model
        # measured (fp32, 160x90 and 320x180, 1 and 2 threads: 1.02-1.45x; docs/benchmarks.md).
        layout = precision == "bf16" if cuda else True
    else:
        layout = channels_last == "on"
    for name, value in (("graphs", graphs), ("cudnn_benchmark", cudnn_benchmark)):
        if value == "on" and not cuda:
            raise DreamvidError(f"speed.{name}=on needs a CUDA device: use speed.{name}=auto or off on the CPU")
    tune = cuda and model_name in CUDNN_BENCHMARK_MODELS if cudnn_benchmark == "auto" else cudnn_benchmark == "on"
    return Plan(precision, layout, cuda if graphs == "auto" else graphs == "on", fold_bn != "off", tune)


def plan_from_config(speed, model_name: str, device: torch.device | str) -> Plan:
    """`plan` for a SpeedConfig."""
    return plan(model_name, device, precision=speed.precision, graphs=speed.graphs,
                channels_last=speed.channels_last, fold_bn=speed.fold_bn, cudnn_benchmark=speed.cudnn_benchmark)


def prepare(net: nn.Module, p: Plan) -> nn.Module:
    """The network made ready for the plan: a copy with its batch norms folded and/or in channels_last
    when asked, else the network itself.

    A copy, because the backbone is shared by every FeatureNet of the process (`model.load_backbone`).
    """
    fold = p.fold_bn and any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    if not (p.channels_last or fold):
        return net
    net = copy.deepcopy(net)
    if fold:
        tapped = getattr(net, "tapped_modules", None)
        fold_batchnorm(net, keep=tapped() if tapped is not None else ())
    if p.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def fold_batchnorm(net: nn.Module, keep: Iterable[nn.Module] = ()) -> int:
    """Fold each eval-mode BatchNorm2d into the Conv2d registered just before it, in place; returns how many.

    keep: convolutions whose own output is read (a dream layer), left unfolded.

    conv -> bn becomes one conv with weight * s and bias (b - mean) * s + beta, s = gamma / sqrt(var + eps),
    and the batch norm becomes an Identity, so the module's forward and its layer names stay as they were
    (a dream layer that is a batch norm's output reads the folded convolution's output, the same values).
    Every network here registers a convolution and its batch norm as neighbours in forward order
    (EfficientNet-Lite's blocks, torchvision's BasicConv2d, ResNet's blocks); tests compare each
    network's layers before and after.
    """
    folded, keep = 0, {id(m) for m in keep}
    for parent in list(net.modules()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and id(conv) not in keep
                    and bn.num_features == conv.out_channels and bn.track_running_stats and not bn.training):
                continue
            with torch.no_grad():
                scale = bn.running_var.add(bn.eps).rsqrt()
                if bn.affine:
                    scale = scale * bn.weight
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                bias = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0.0)
                conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
                conv.bias = nn.Parameter(bias, requires_grad=False)
            setattr(parent, bn_name, nn.Identity())
            folded += 1
    return folded


def jitter_offsets(jitter: int, generator: Optional[torch.Generator] = None) -> Tuple[int, int]:
    """(dy, dx) of one step's random roll, drawn exactly as `dream.dream_step` draws them."""
    if jitter <= 0:
        return 0, 0
    ox, oy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
    return oy, ox


def update(x: torch.Tensor, g: torch.Tensor, k) -> torch.Tensor:
    """x + k * g / mean|g|, clamped to [0, 1]: the normalised step, the update in one addcmul, clamped in place.

    k is the step in [0, 1] units (a number, or a device scalar inside a graph).
    """
    scale = k / g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(TINY)
    return torch.addcmul(x, g, scale).clamp_(0.0, 1.0)


class _Graph:
    __slots__ = ("graph", "inp", "out", "k")

    def __init__(self, graph, inp: torch.Tensor, out: torch.Tensor, k: Optional[torch.Tensor]):
        self.graph, self.inp, self.out, self.k = graph, inp, out, k


class Stepper:
    """step(x, objective, *, step, jitter, generator) -> x: `dream.dream_step` with the plan's levers.

    Also `gradient(x, objective)`, the fp32 gradient alone, for tiling. With graphs, one graph per
    (kind, shape) of the current objective, at most MAX_GRAPHS; a new objective object drops them (reuse
    objectives across frames to keep the graphs: `zoom.dreamer` does).
    """

    def __init__(self, p: Plan):
        self.plan = p
        self._graphs: Dict[tuple, _Graph] = {}
        self._eager_calls: Dict[tuple, int] = {}
        self._objective: Optional[Objective] = None
        self._ungraphable: set = set()
        self._pool = None
        self._stream = None
        self.captures = 0  # graphs captured so far (for tests and the benchmark)

    # -- the public steps ------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, objective: Objective, *, step: float = 1.5, jitter: int = 32,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.plan.plain_step:
            return dream_step(x, objective, step=step, jitter=jitter, generator=generator)
        dy, dx = jitter_offsets(jitter, generator)
        # Rolling, stepping and rolling back equals stepping on the rolled gradient: mean|g| does not
        # depend on the roll and the update is per pixel. So the graph never sees the roll.
        xr = torch.roll(x.detach(), (dy, dx), (2, 3))
        out = self._run("step", xr, objective, step / 255.0)
        return torch.roll(out, (-dy, -dx), (2, 3))

    def gradient(self, x: torch.Tensor, objective: Objective) -> torch.Tensor:
        """d objective / d x in fp32, x (B, 3, H, W). With graphs the result is only valid until the next call."""
        return self._run("grad", x.detach(), objective, None)

    def reset(self) -> None:
        """Drop every graph and its memory (after an out-of-memory error, or to change objective)."""
        self._graphs.clear()
        self._eager_calls.clear()
        self._pool = None

    # -- eager ---------------------------------------------------------------------------------------
    def _autocast(self, device: torch.device):
        enabled = self.plan.precision == "bf16"
        # No cast cache: a graph capture must not keep casts made outside it (and an eager step casts
        # each weight once anyway).
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=False)

    def _eager_gradient(self, x: torch.Tensor, objective: Objective) -> torch.Tensor:
        if self.plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        leaf = x.detach().requires_grad_(True)
        with self._autocast(x.device):
            loss = objective(leaf)
        (g,) = torch.autograd.grad(loss.float(), leaf)
        return g.float()

    def _eager(self, kind: str, x: torch.Tensor, objective: Objective, k: Optional[float]) -> torch.Tensor:
        g = self._eager_gradient(x, objective)
        return update(x, g, k) if kind == "step" else g

    # -- graphs --------------------------------------------------------------------------------------
    def _run(self, kind: str, x: torch.Tensor, objective: Objective, k: Optional[float]) -> torch.Tensor:
        if not (self.plan.graphs and x.is_cuda) or objective in self._ungraphable:
            return self._eager(kind, x, objective, k)
        if objective is not self._objective:
            self.reset()
            self._objective = objective
        key = (kind, tuple(x.shape), x.dtype, x.device)
        entry = self._graphs.pop(key, None)  # re-inserted below: the dict's order is the replay order
        if entry is None:
            calls = self._eager_calls.pop(key, 0)
            if calls < WARMUP_STEPS:
                _put_bounded(self._eager_calls, key, calls + 1)
                return self._on_side_stream(x.device, lambda: self._eager(kind, x, objective, k))
            # The device's own streams and pool, whichever device is current.
            with torch.cuda.device(x.device):
                entry = self._capture(kind, x, objective)
            if entry is None:
                return self._eager(kind, x, objective, k)
            self.captures += 1
        _put_bounded(self._graphs, key, entry)
        entry.inp.copy_(x)
        if entry.k is not None:
            entry.k.fill_(k)
        entry.graph.replay()
        return entry.out

    def _side_stream(self, device: torch.device) -> torch.cuda.Stream:
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=device)
        return self._stream

    def _on_side_stream(self, device: torch.device, fn):
        side, main = self._side_stream(device), torch.cuda.current_stream(device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = fn()
        main.wait_stream(side)
        return out

    def _capture(self, kind: str, x: torch.Tensor, objective: Objective) -> Optional[_Graph]:
        """Capture one step for x's shape; None (and a warning) when the objective cannot be captured."""
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        layout = torch.channels_last if self.plan.channels_last else torch.contiguous_format
        # The graph's inputs and outputs live outside the shared pool: another graph's intermediates
        # may reuse any pool block, never these.
        inp = torch.empty_like(x, memory_format=layout).copy_(x)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        k = torch.zeros((), device=x.device, dtype=torch.float32) if kind == "step" else None
        graph = torch.cuda.CUDAGraph()
        try:
            # The outer stream context restores the caller's stream even when a failed capture leaves
            # torch.cuda.graph's own context open.
            with torch.cuda.stream(self._side_stream(x.device)):
                with torch.cuda.graph(graph, pool=self._pool, stream=self._side_stream(x.device),
                                      capture_error_mode="thread_local"):
                    result = self._eager(kind, inp, objective, k)
                    out.copy_(result)
                    del result
        except torch.cuda.OutOfMemoryError:
            self.reset()
            raise
        except Exception as e:  # noqa: BLE001 - e.g. an objective that copies from the host while capturing
            self._ungraphable.add(objective)
            self.reset()
            torch.cuda.synchronize()
            warnings.warn(f"speed.graphs: this dream objective cannot be captured in a CUDA graph "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); stepping without "
                          f"graphs (speed.graphs=off skips the attempt)", stacklevel=4)
            return None
        return _Graph(graph, inp, out, k)


def _put_bounded(table: dict, key, value) -> None:
    """table[key] = value as the newest entry, the oldest dropped beyond MAX_GRAPHS."""
    table[key] = value
    while len(table) > MAX_GRAPHS:
        del table[next(iter(table))]


def make_stepper(model_name: str, device: torch.device | str, speed=None) -> Tuple[Plan, Stepper]:
    """(plan, stepper) for a model on a device; `speed` is a SpeedConfig (None: all auto)."""
    p = plan(model_name, device) if speed is None else plan_from_config(speed, model_name, device)
    return p, Stepper(p)
