"""Feature visualisation: render, from noise, the image that most excites one channel of a layer.

After Olah, Mordvintsev & Schubert 2017, "Feature Visualization" (Distill), and Lucid: the image is
parameterised by decorrelated Fourier coefficients (a natural-image prior), and every step it is
randomly padded, shifted, scaled and rotated, so that only patterns the network sees robustly survive.
All channels are rendered in one batch: image b maximises channel b. Images are (B, 3, H, W) in [0, 1].
"""
from __future__ import annotations

import math
import numbers
import re
from collections import abc
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DreamvidError

PARAMS = ("fourier", "pixel")
OBJECTIVES = ("channel", "neuron")
DEFAULT_COUNT = 8  # channels rendered when none are asked for

Features = Callable[[torch.Tensor], Dict[str, torch.Tensor]]
Transform = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]
Callback = Optional[Callable[[dict], None]]

# ---------------------------------------------------------------------------------------------
# Which channels.

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_FIRST = re.compile(r"^first\s*:\s*(\d+)$", re.IGNORECASE)


def parse_channels(spec: Any, n_channels: int, *, layer: str = "") -> List[int]:
    """Channel spec -> channel indices, in the order given, duplicates dropped.

    spec: an int, a string ("12", "10-19" inclusive, "first:8", or several joined by commas), or a list
    of those; empty or None means the first 8 channels.
    """
    where = f"layer {layer} has" if layer else "the layer has"
    valid = f"{where} {n_channels} channels (valid: 0-{n_channels - 1})"
    if spec is None or isinstance(spec, (str, numbers.Integral)) or not isinstance(spec, abc.Sequence):
        items = [] if spec is None or spec == "" else [spec]
    else:
        items = list(spec)
    if not items:
        return list(range(min(DEFAULT_COUNT, n_channels)))
    out: List[int] = []
    for item in items:
        for c in _parse_item(item, n_channels, valid):
            if not 0 <= c < n_channels:
                raise DreamvidError(f"channel {c} is out of range: {valid}")
            if c not in out:
                out.append(c)
    return out


def _parse_item(item: Any, n_channels: int, valid: str) -> List[int]:
    if isinstance(item, bool) or not isinstance(item, (str, numbers.Integral)):
        raise DreamvidError(f"cannot read channel {item!r}: use an int, 'A-B' or 'first:N'")
    if isinstance(item, numbers.Integral):
        return [int(item)]
    out: List[int] = []
    for part in (p.strip() for p in item.split(",")):
        if re.fullmatch(r"-?\d+", part):
            out.append(int(part))
        elif m := _RANGE.match(part):
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise DreamvidError(f"channel range {part!r} runs backwards: write {b}-{a}")
            out += range(a, b + 1)
        elif m := _FIRST.match(part):
            n = int(m.group(1))
            if n < 1:
                raise DreamvidError(f"{part!r} selects no channels: use first:N with N >= 1")
            if n > n_channels:
                raise DreamvidError(f"{part!r} asks for more channels than there are: {valid}")
            out += range(n)
        else:
            raise DreamvidError(f"cannot read channel {part!r}: use an int (12), a range (10-19) or "
                                f"first:N (first:8); {valid}")
    return out


# ---------------------------------------------------------------------------------------------
# Image parameterisations: (parameters to optimise, a function that returns the image).

# Square root of ImageNet's colour correlation (Lucid); columns scaled so that the largest has norm 1.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]])
COLOR_DECORRELATION = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()

ImageFn = Callable[[], torch.Tensor]


def rfft2_freqs(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per pixel for each coefficient of `torch.fft.rfft2`: (H, W // 2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def decorrelate_colors(t: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in decorrelated colour space -> RGB (before squashing)."""
    return torch.einsum("ij,bjhw->bihw", COLOR_DECORRELATION.to(t), t)


def fourier_image(batch: int, height: int, width: int, *, sd: float = 0.01, decay_power: float = 1.0,
                  generator: Optional[torch.Generator] = None,
                  device: torch.device | str = "cpu") -> Tuple[List[torch.Tensor], ImageFn]:
    """Decorrelated Fourier parameterisation: spectrum scaled by 1/max(f, 1/max(H, W))**decay_power,
    colours decorrelated, squashed by a sigmoid. Returns ([spectrum], image_fn -> (B, 3, H, W) in [0, 1])."""
    if batch < 1 or height < 1 or width < 1:
        raise DreamvidError(f"cannot make a {batch}x{height}x{width} image: every size must be at least 1")
    if sd <= 0:
        raise DreamvidError(f"init sd must be positive, got {sd}")
    freqs = rfft2_freqs(height, width)
    # Amplitudes fall as 1/f, as natural images' do: in these coordinates the gradient is whitened, so
    # high frequencies no longer dominate the ascent as they do on plain pixels (hence their noise).
    scale = (1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power).to(device)
    spectrum = (torch.randn(batch, 3, *freqs.shape, 2, generator=generator) * sd).to(device).requires_grad_(True)

    def image() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        # "ortho" keeps the transform unitary, so one lr suits any size; /4 is Lucid's constant.
        t = torch.fft.irfft2(coeffs, s=(height, width), norm="ortho") / 4.0
        return torch.sigmoid(decorrelate_colors(t))

    return [spectrum], image


def pixel_image(batch: int, height: int, width: int, *, sd: float = 0.01, squash: str = "sigmoid",
                generator: Optional[torch.Generator] = None,
                device: torch.device | str = "cpu") -> Tuple[List[torch.Tensor], ImageFn]:
    """Plain pixels, no prior: squash="sigmoid" (unbounded logits) or "clamp" (values around 0.5)."""
    if squash not in ("sigmoid", "clamp"):
        raise DreamvidError(f"pixel squash must be sigmoid or clamp, got {squash!r}")
    if batch < 1 or height < 1 or width < 1:
        raise DreamvidError(f"cannot make a {batch}x{height}x{width} image: every size must be at least 1")
    pixels = (torch.randn(batch, 3, height, width, generator=generator) * sd).to(device).requires_grad_(True)

    def image() -> torch.Tensor:
        return torch.sigmoid(pixels) if squash == "sigmoid" else (pixels + 0.5).clamp(0.0, 1.0)

    return [pixels], image


def make_image(param: str, batch: int, size: int, **kwargs) -> Tuple[List[torch.Tensor], ImageFn]:
    if param == "fourier":
        return fourier_image(batch, size, size, **kwargs)
    if param == "pixel":
        kwargs.pop("decay_power", None)
        return pixel_image(batch, size, size, **kwargs)
    raise DreamvidError(f"neuron.param must be one of {', '.join(PARAMS)}, got {param!r}")


# ---------------------------------------------------------------------------------------------
# Robustness transforms: small factories that check their arguments and return t(x, generator) -> x.
# Each image of the batch gets its own random draw.


def _uniform(n: int, low: float, high: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Per-image affine resample; theta (B, 2, 3) maps output to input in normalised coordinates."""
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def pad(width: int, mode: str = "reflect", value: float = 0.5) -> Transform:
    """Pad every side by `width` pixels (reflect, or constant `value`), so shifts do not wrap edges in."""
    if width < 0:
        raise DreamvidError(f"pad width must be 0 or more, got {width}")
    if mode not in ("reflect", "constant"):
        raise DreamvidError(f"pad mode must be reflect or constant, got {mode!r}")

    def inner(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if width == 0:
            return x
        if mode == "constant":
            return F.pad(x, [width] * 4, mode="constant", value=value)
        return F.pad(x, [width] * 4, mode="reflect")

    return inner


def jitter(d: int) -> Transform:
    """Random crop that drops d pixels in each direction: a shift of 0..d without resampling."""
    if not isinstance(d, numbers.Integral) or d < 1:
        raise DreamvidError(f"jitter must be a whole number of pixels >= 1, got {d!r}")

    def inner(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h <= d or w <= d:
            raise DreamvidError(f"jitter {d} needs an image larger than {d} px, got {w}x{h}")
        off = torch.randint(0, d + 1, (x.shape[0], 2), generator=generator).tolist()
        return torch.stack([x[b, :, oy:oy + h - d, ox:ox + w - d] for b, (oy, ox) in enumerate(off)])

    return inner


def random_scale(low: float = 0.9, high: float = 1.1) -> Transform:
    """Scale the content about the centre by a random factor in [low, high]; the size is kept."""
    if not 0 < low <= high:
        raise DreamvidError(f"random scale needs 0 < low <= high, got {low}, {high}")

    def inner(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        s = _uniform(x.shape[0], low, high, generator)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
        return _resample(x, theta)

    return inner


def random_rotate(degrees: float = 10.0) -> Transform:
    """Rotate about the centre by a random angle in [-degrees, degrees]; the size is kept."""
    if degrees < 0:
        raise DreamvidError(f"random rotation must be 0 or more degrees, got {degrees}")

    def inner(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        a = torch.deg2rad(_uniform(x.shape[0], -degrees, degrees, generator))
        c, s = torch.cos(a), torch.sin(a)
        # A rotation in pixels, written in normalised coordinates (x spans w pixels, y spans h).
        theta = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 1] = c, -s * h / w
        theta[:, 1, 0], theta[:, 1, 1] = s * w / h, c
        return _resample(x, theta)

    return inner


def compose(*transforms: Transform) -> Transform:
    """Apply the transforms left to right."""
    for t in transforms:
        if not callable(t):
            raise DreamvidError(f"compose takes transforms (callables), got {t!r}")

    def inner(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        for t in transforms:
            x = t(x, generator)
        return x

    return inner


def standard_transforms(pad_mode: str = "reflect") -> Transform:
    """Lucid's robustness set: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4."""
    return compose(pad(12, pad_mode), jitter(8), random_scale(0.9, 1.1), random_rotate(10.0), jitter(4))


def identity(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    return x


# ---------------------------------------------------------------------------------------------
# The objective and the optimisation.


def channel_objective(acts: torch.Tensor, channels: torch.Tensor, objective: str = "channel") -> torch.Tensor:
    """acts (B, C, H, W), channels (B,) -> (B,): image b's score for its own channel channels[b].

    "channel": the channel's mean over all positions; "neuron": its value at the centre position.
    """
    a = acts[torch.arange(acts.shape[0], device=acts.device), channels]  # (B, H, W)
    if objective == "channel":
        return a.float().mean((1, 2))
    if objective == "neuron":
        return a[:, a.shape[1] // 2, a.shape[2] // 2].float()
    raise DreamvidError(f"neuron.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def channel_means(features: Features, layer: str, images: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """(B, 3, H, W) images -> (B, len(channels)): each image's mean activation of each listed channel."""
    with torch.no_grad():
        acts = features(images)[layer]
    return acts[:, list(channels)].float().mean((2, 3))


def render(features: Features, layer: str, channels: Sequence[int], *, size: int = 128, steps: int = 256,
           lr: float = 0.05, param: str = "fourier", objective: str = "channel", decay_power: float = 1.0,
           transforms: Optional[Transform] = None, generator: Optional[torch.Generator] = None,
           device: torch.device | str = "cpu", callback: Callback = None) -> torch.Tensor:
    """Optimise one image per channel with Adam, all in one batch -> (len(channels), 3, size, size) in [0, 1].

    callback gets {"step", "image", "score"} before the first step (step 0) and after every step.
    """
    if not channels:
        raise DreamvidError("no channels to render")
    if steps < 0:
        raise DreamvidError(f"neuron.steps must be 0 or more, got {steps}")
    if not lr > 0:
        raise DreamvidError(f"neuron.lr must be positive, got {lr}")
    if objective not in OBJECTIVES:
        raise DreamvidError(f"neuron.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    transforms = standard_transforms() if transforms is None else transforms
    params, image = make_image(param, len(channels), size, decay_power=decay_power, generator=generator,
                               device=device)
    target = torch.tensor(list(channels), device=device)
    opt = torch.optim.Adam(params, lr=lr)
    score = torch.full((len(channels),), float("nan"))
    if callback is not None:
        with torch.no_grad():
            callback({"step": 0, "image": image(), "score": score})
    for i in range(steps):
        x = transforms(image(), generator)
        score = channel_objective(features(x)[layer], target, objective)
        opt.zero_grad(set_to_none=True)
        # Each image only touches its own score, so the sum ascends every channel independently.
        (-score.sum()).backward()
        opt.step()
        if callback is not None:
            with torch.no_grad():
                callback({"step": i + 1, "image": image(), "score": score.detach()})
    with torch.no_grad():
        return image().detach()


def recorded_steps(steps: int, every: int) -> List[int]:
    """The steps a recording keeps: the starting noise (0) and every `every`-th step after it."""
    if every < 1:
        return []
    return list(range(0, steps + 1, every))


# ---------------------------------------------------------------------------------------------
# Labelled grids (uint8 RGB arrays).

LABEL_HEIGHT = 18
GAP = 4
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def grid_layout(n: int) -> Tuple[int, int]:
    """(rows, cols) for n cells, near square, wider than tall when not square."""
    if n < 1:
        raise DreamvidError("a grid needs at least one image")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def grid_size(n: int, height: int, width: int, *, label_height: int = LABEL_HEIGHT, gap: int = GAP) -> Tuple[int, int]:
    """(H, W) of the grid of n cells of height x width images with a label strip under each."""
    rows, cols = grid_layout(n)
    return rows * (height + label_height) + (rows + 1) * gap, cols * width + (cols + 1) * gap


def text_strip(width: int, text: str, *, height: int = LABEL_HEIGHT, fallback: str = "") -> np.ndarray:
    """A (height, width, 3) strip with `text` centred, shrunk to fit (or `fallback` if it cannot)."""
    import cv2

    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = BACKGROUND
    for candidate in (text, fallback):
        if not candidate:
            continue
        scale = 0.45 * height / LABEL_HEIGHT
        (tw, th), _ = cv2.getTextSize(candidate, _FONT, scale, 1)
        if tw > width - 4:
            scale *= (width - 4) / tw
            (tw, th), _ = cv2.getTextSize(candidate, _FONT, scale, 1)
        if scale >= 0.25 or candidate == fallback or not fallback:
            org = ((width - tw) // 2, (height + th) // 2)
            cv2.putText(strip, candidate, org, _FONT, scale, TEXT, 1, cv2.LINE_AA)
            break
    return strip


def make_grid(images: Sequence[np.ndarray], labels: Sequence[str], *, label_height: int = LABEL_HEIGHT,
              gap: int = GAP) -> np.ndarray:
    """(H, W, 3) uint8 images of one size -> a near-square grid, each image over its label strip."""
    if len(images) != len(labels):
        raise DreamvidError(f"{len(images)} images but {len(labels)} labels")
    h, w = images[0].shape[:2]
    rows, cols = grid_layout(len(images))
    out = np.empty(grid_size(len(images), h, w, label_height=label_height, gap=gap) + (3,), np.uint8)
    out[:] = BACKGROUND
    for k, (img, label) in enumerate(zip(images, labels)):
        if img.shape != (h, w, 3):
            raise DreamvidError(f"grid images must share one size: {img.shape} vs {(h, w, 3)}")
        r, c = divmod(k, cols)
        y, x = gap + r * (h + label_height + gap), gap + c * (w + gap)
        out[y:y + h, x:x + w] = img
        out[y + h:y + h + label_height, x:x + w] = text_strip(w, label, height=label_height,
                                                             fallback=label.rsplit(":", 1)[-1])
    return out


def titled(image: np.ndarray, title: str, *, height: int = LABEL_HEIGHT + 6) -> np.ndarray:
    """The image with a title strip above it."""
    return np.concatenate([text_strip(image.shape[1], title, height=height), image], axis=0)


def comparison_grid(rows: Sequence[Tuple[str, Sequence[np.ndarray], Sequence[str]]]) -> np.ndarray:
    """[(title, images, labels)] -> one row of labelled cells per entry, each under its title strip."""
    strips = []
    for title, images, labels in rows:
        h, w = images[0].shape[:2]
        n = len(images)
        row = np.empty((h + LABEL_HEIGHT + 2 * GAP, n * w + (n + 1) * GAP, 3), np.uint8)
        row[:] = BACKGROUND
        for k, (img, label) in enumerate(zip(images, labels)):
            x = GAP + k * (w + GAP)
            row[GAP:GAP + h, x:x + w] = img
            row[GAP + h:GAP + h + LABEL_HEIGHT, x:x + w] = text_strip(w, label, fallback=label.rsplit(":", 1)[-1])
        strips.append(titled(row, title, height=LABEL_HEIGHT + 6))
    width = max(s.shape[1] for s in strips)
    if any(s.shape[1] != width for s in strips):
        raise DreamvidError("comparison rows must have the same number of images of one size")
    return np.concatenate(strips, axis=0)


def to_uint8(images: torch.Tensor) -> List[np.ndarray]:
    """(B, 3, H, W) in [0, 1] -> B arrays (H, W, 3) uint8 RGB."""
    x = (images.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(x)
