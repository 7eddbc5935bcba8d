"""The DeepDream core: gradient ascent on layer activations over an image pyramid.

After Google's 2015 notebook (google/deepdream `dream.ipynb`): jitter by a random roll that is undone,
a step normalised by the mean absolute gradient, clamping to the valid range, octaves that carry only
the detail (dreamed - octave base) up to the next, larger octave. Images are (B, 3, H, W) in [0, 1].
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .errors import DreamvidError

Objective = Callable[[torch.Tensor], torch.Tensor]
# The normalised step divides by the mean absolute gradient, guarded only against a gradient of exactly
# zero: a small gradient (an untrained network's are 1e-13) still takes a full step, as in the notebook.
TINY = torch.finfo(torch.float32).tiny
Features = Callable[[torch.Tensor], Dict[str, torch.Tensor]]
Callback = Optional[Callable[[dict], None]]


Weight = Union[float, torch.Tensor]


def make_objective(features: Features, layers: Sequence[str], weights: Union[Sequence[float], torch.Tensor] = (),
                   channels: Sequence[Sequence[int]] = (),
                   guides: Optional[Dict[str, torch.Tensor]] = None, guide_weight: Weight = 1.0,
                   blend: Optional[Tuple[Dict[str, torch.Tensor], Weight]] = None) -> Objective:
    """image -> scalar to maximise: the weighted mean square of each layer's (selected) activations.

    With `guides` (layer -> guide features (C, N)), each position is instead pulled towards the guide
    feature it matches best by dot product (the notebook's guided dreaming). `weights` (one per layer)
    and `guide_weight` may be tensors on the device (1-D and 0-d) that the caller changes in place
    between steps: then one objective, and the CUDA graphs captured for it, serves every frame of a
    weight schedule. blend=(other guides, b): a guide schedule between two keyframes' pictures, the
    guided term (1 - b) of `guides`' and b of the other's (b may be a 0-d tensor changed in place).
    """
    layers = list(layers)
    if isinstance(weights, torch.Tensor):
        if tuple(weights.shape) != (len(layers),):
            raise DreamvidError(f"dream.layer_weights has {weights.numel()} values for {len(layers)} layers")
        weights = list(weights.unbind())  # views of the caller's tensor: its later values are used
    weights = list(weights) or [1.0] * len(layers)
    channels = list(channels) or [[] for _ in layers]
    if len(weights) != len(layers):
        raise DreamvidError(f"dream.layer_weights has {len(weights)} values for {len(layers)} layers")
    if len(channels) != len(layers):
        raise DreamvidError(f"dream.channels has {len(channels)} lists for {len(layers)} layers")

    # Channel indices as a tensor on the activations' device, made on the first call: a later call
    # (a CUDA graph capture among them) copies nothing from the host.
    indices: Dict[Tuple[str, torch.device], torch.Tensor] = {}

    def objective(x: torch.Tensor) -> torch.Tensor:
        acts = features(x)
        total = x.new_zeros(())
        for layer, w, ch in zip(layers, weights, channels):
            a = acts[layer]
            if ch:
                if max(ch) >= a.shape[1] or min(ch) < 0:
                    raise DreamvidError(f"channel {max(ch)} out of range for layer {layer}, which has "
                                        f"{a.shape[1]} channels (0..{a.shape[1] - 1})")
                key = (layer, a.device)
                if key not in indices:
                    indices[key] = torch.tensor(list(ch), dtype=torch.long, device=a.device)
                a = a.index_select(1, indices[key])
            if guides is not None and layer in guides:
                pull = (a * guided_target(a, guides[layer])).mean()
                if blend is not None:
                    other, b = blend
                    pull = (1 - b) * pull + b * (a * guided_target(a, other[layer])).mean()
                total = total + w * guide_weight * pull
            else:
                total = total + w * a.float().pow(2).mean()
        return total

    return objective


def guided_target(a: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """For activations a (B, C, H, W) and guide features (C, N): the best-matching guide feature at each position."""
    b, c, h, w = a.shape
    x = a.detach().reshape(b, c, h * w)
    match = torch.einsum("bcp,cn->bpn", x, guide.to(x.dtype)).argmax(-1)  # (B, HW)
    return guide.to(a.dtype)[:, match].permute(1, 0, 2).reshape(b, c, h, w)


def guide_features(features: Features, guide: torch.Tensor, layers: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Guide image (1, 3, H, W) -> {layer: features (C, N)}."""
    with torch.no_grad():
        acts = features(guide)
    return {layer: acts[layer][0].flatten(1).detach() for layer in layers}


def dream_step(x: torch.Tensor, objective: Objective, *, step: float = 1.5, jitter: int = 32,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One ascent step: roll by a random jitter, step along the normalised gradient, roll back, clamp.

    step is the mean absolute change in 0-255 pixel levels, as the notebook's step_size.
    """
    if jitter > 0:
        ox, oy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
    else:
        ox = oy = 0
    xs = torch.roll(x, (oy, ox), (2, 3)).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(xs), xs)
    g = torch.roll(g, (-oy, -ox), (2, 3))
    g = g / g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(TINY)
    return (x.detach() + (step / 255.0) * g).clamp(0.0, 1.0)


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_size: int = 32) -> List[Tuple[int, int]]:
    """Sizes of the pyramid, largest first; octaves that would be smaller than min_size are dropped."""
    if octaves < 1:
        raise DreamvidError(f"dream.octaves must be at least 1, got {octaves}")
    if scale <= 1.0:
        raise DreamvidError(f"dream.octave_scale must be greater than 1, got {scale}")
    if min(height, width) < min_size:
        raise DreamvidError(f"image {width}x{height} is smaller than the {min_size} px this model needs: "
                            f"use width/height of at least {min_size}")
    sizes = []
    for i in range(octaves):
        h, w = round(height / scale**i), round(width / scale**i)
        if min(h, w) < min_size:
            warnings.warn(f"dream.octaves={octaves} would shrink {width}x{height} below {min_size} px; "
                          f"using {len(sizes)} octave{'s' * (len(sizes) != 1)}", stacklevel=2)
            break
        sizes.append((h, w))
    return sizes


def resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def dream(x: torch.Tensor, objective: Objective, *, octaves: int = 4, octave_scale: float = 1.4,
          iterations: int = 10, step: float = 1.5, jitter: int = 32, min_size: int = 32,
          generator: Optional[torch.Generator] = None, callback: Callback = None,
          step_fn: Callable[..., torch.Tensor] = dream_step,
          step_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Dream an image over an octave pyramid; only the detail is carried up between octaves.

    x: (B, 3, H, W) in [0, 1] -> same shape, dreamed. step_fn: a drop-in for `dream_step` (the fast
    path of `dreamvid.fast`, or tiles from `dreamvid.tiling`). step_weight: (1, 1, H, W) >= 0, a
    per-pixel multiplier of each step (resized to each octave), so that some regions dream faster
    than others; None: 1 everywhere.
    """
    if iterations < 0:
        raise DreamvidError(f"dream.iterations must be 0 or more, got {iterations}")
    x = x.detach()
    sizes = octave_sizes(x.shape[-2], x.shape[-1], octaves, octave_scale, min_size)
    bases = [resize(x, s) for s in sizes]
    detail = torch.zeros_like(bases[-1])
    img = bases[-1]
    for level, base in enumerate(reversed(bases)):
        img = (base + resize(detail, base.shape[-2:])).clamp(0.0, 1.0)
        weight = None if step_weight is None else resize(step_weight.to(img), base.shape[-2:])
        for i in range(iterations):
            stepped = step_fn(img, objective, step=step, jitter=jitter, generator=generator)
            # the step is a pixel's own change (the gradient's normalisation is the image's), so scaling
            # the change scales that pixel's step (after step_fn's clamp: near 0 and 1 a little less);
            # the clamp again because a weight above 1 may overshoot
            img = stepped if weight is None else torch.lerp(img, stepped, weight).clamp_(0.0, 1.0)
            if callback is not None:
                callback({"octave": level, "iteration": i, "image": img})
        detail = img - base
    return img


def image_generator(seed: int, index: int = 0) -> torch.Generator:
    """A CPU generator for frame `index` of a render: each frame's randomness depends only on (seed, index),
    so a resumed render reproduces an uninterrupted one exactly."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63))

