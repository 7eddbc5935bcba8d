"""Zoom mode: dream a frame, move it a little (zoom / rotate / translate), feed it back, repeat."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .. import color
from ..config import Config
from ..images import clouds, fit_size, read_image, to_tensor, to_uint8
from ..mask import Mask, composite
from ..model import resolve_device
from ..motion import per_frame_zoom, transform
from ..settings import frame_values
from .checks import warn_if_slow
from .context import Context
from .dreamer import dreamer, with_step_bar
from .outputs import read_files, resolve_output
from .render import render

# The built-in starting image's size when none is given: quick on a CPU, detailed on a GPU.
DEFAULT_SIZE = {"cpu": (384, 216), "cuda": (1280, 720)}


def start_image(cfg: Config, device: torch.device) -> np.ndarray:
    if cfg.input:
        return fit_size(read_image(cfg.input), cfg.width, cfg.height)
    w, h = DEFAULT_SIZE["cuda" if device.type == "cuda" else "cpu"]
    if cfg.width is not None and cfg.height is None:
        w, h = cfg.width, max(1, round(cfg.width * h / w))
    elif cfg.height is not None and cfg.width is None:
        w, h = max(1, round(cfg.height * w / h)), cfg.height
    elif cfg.width is not None and cfg.height is not None:
        w, h = cfg.width, cfg.height
    return clouds(h, w, seed=cfg.seed)


def move(cfg: Config, x: torch.Tensor, t: int, clamp: bool = True) -> torch.Tensor:
    """Frame t's motion: the image that frame t + 1 dreams from (clamp=False: x is not a picture, but
    a picture and its signed residual)."""
    m = frame_values(cfg.motion, "motion", t, cfg.fps)
    per = 1.0 if cfg.motion.units == "frame" else cfg.fps  # frames the rates are given over
    return transform(x, zoom=per_frame_zoom(m["zoom"], per), angle=m["angle"] / per, tx=m["tx"] / per,
                     ty=m["ty"] / per, cx=m["cx"], cy=m["cy"], border=cfg.motion.border, clamp=clamp)


def matched(cfg: Config, frame: torch.Tensor, colors: Optional[np.ndarray], t: int):
    """(frame t colour-matched to `colors`, the reference): with no reference yet, this frame becomes it."""
    strength = frame_values(cfg.color, "color", t, cfg.fps)["match"]
    if colors is None and (strength > 0 or isinstance(cfg.color.match, str)):
        return frame, color.reference(frame, cfg.color.space)  # the first frame's: it stays as it is
    if colors is not None:
        return color.match(frame, colors, strength, cfg.color.space), colors
    return frame, colors


def zoom_frames(cfg: Config, x: torch.Tensor, dream_frame, start: int = 0, colors: Optional[np.ndarray] = None,
                carried: Optional[torch.Tensor] = None, mask: Optional[Mask] = None,
                plain: Optional[torch.Tensor] = None,
                plain_colors: Optional[np.ndarray] = None) -> Iterator[Tuple[torch.Tensor, Dict[str, Any]]]:
    """Yield (frame t, what frame t + 1 needs) for t = start..: x is frame start's input (None for a frame
    between keyframes, which needs only `carried`); colors: the reference's (`color.reference`), None: the
    first dream's; carried: (2, 3, H, W), with cadence > 1 between keyframes, the last keyframe's input
    and its dream's residual, moved to frame start - 1.

    cadence=N: frame k*N is dreamed in full, at N times dream.step: a dream fed back grows by every
    pass, and N frames' worth of growth in one keeps the look of cadence 1 (at cadence 3, 160x90: detail
    8.1 against 8.0; at the plain step 3.7). Its residual (dream minus input) then moves with the zoom's
    exact motion together with the picture it was dreamed on, and is eased in over the N frames (frame
    k*N + j shows (j + 1) / N of it), so each frame changes as much as the last and the keyframe does not
    jump; the next keyframe dreams from the whole dream, moved. cadence_touch_up: that many ascent steps
    at full size on each frame between (not fed back).

    mask (dream.mask): each frame is the dream where the mask is white and, where it is black, frame t
    of the same zoom without the dream (`plain`, moved and colour-matched as that render's frames are,
    to `plain_colors`); x at the start.
    """
    n = max(1, int(cfg.cadence))
    if mask is not None and plain is None:
        plain, plain_colors = x, colors
    for t in range(start, cfg.frames):
        s = frame_values(cfg.dream, "dream", t, cfg.fps)
        if mask is not None:
            plain, plain_colors = matched(cfg, plain, plain_colors, t)

        def kept(img: torch.Tensor) -> torch.Tensor:  # the undreamed zoom where the mask is black
            return img if mask is None else composite(img, plain, mask.at(t), s["mask_strength"])

        def undreamed(nxt: Dict[str, Any]) -> Dict[str, Any]:  # frame t + 1's undreamed picture
            nonlocal plain
            if mask is not None:
                plain = nxt["plain"] = move(cfg, plain, t)
                nxt["plain_colors"] = plain_colors
            return nxt

        if n == 1 or t % n == 0 or carried is None:
            frame = dream_frame(x, t, s if n == 1 else dict(s, step=s["step"] * n))
            frame, colors = matched(cfg, frame, colors, t)
            frame = kept(frame)
            if n == 1:
                x = move(cfg, frame, t)
                yield frame, undreamed({"input": x, "colors": colors})
                continue
            carried = torch.cat([x, frame - x])  # the picture dreamed on, and its dream
        else:
            carried = move(cfg, carried, t - 1, clamp=False)  # both move exactly as the picture does
        ease = (t % n + 1) / n
        shown = (carried[:1] + ease * carried[1:]).clamp(0.0, 1.0)
        if t % n and cfg.cadence_touch_up:
            shown = dream_frame(shown, t, dict(s, octaves=1, iterations=cfg.cadence_touch_up))
        shown = kept(shown)
        nxt = {"colors": colors, "carried": carried}
        if (t + 1) % n == 0:  # what the next keyframe dreams from: the whole dream, moved
            nxt["input"] = x = move(cfg, kept((carried[:1] + carried[1:]).clamp(0.0, 1.0)), t)
        yield shown, undreamed(nxt)


def fade_length(cfg: Config) -> int:
    """loop=true: how many frames the end fades into the start over (a second, at most a third of the zoom)."""
    return max(1, min(int(round(cfg.fps)), cfg.frames // 3)) if cfg.loop and cfg.frames > 1 else 0


def fade(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """(1 - w) a + w b, uint8 frames."""
    return np.round(a.astype(np.float32) * (1.0 - w) + b.astype(np.float32) * w).astype(np.uint8)


def run_zoom(cfg: Config, context: Optional[Context] = None) -> str:
    """Render the zoom animation; returns the output path.

    loop=true: the zoom is made 2k frames longer (`fade_length`): frames 0..k-1 are a run-in (the dream
    grows fastest from the plain picture: its steps are the largest), frames k..2k-1 are held back, and the
    output is frames 2k.. of it, whose last k frames cross-fade into the held ones (each half way to the next
    frame of the zoom); the last output frame is half way from frame 2k-1 to the first output frame (2k),
    so that it leads into it by half a step of the zoom.
    A render resumed in the fade makes the held frames again.
    """
    context = context or Context()
    device = resolve_device(cfg.device)
    out = resolve_output(cfg, "dream.mp4", context.folder)
    img = start_image(cfg, device)
    h, w = img.shape[:2]
    if cfg.input:
        warn_if_slow(cfg, w, h, device.type)
    dream_frame = dreamer(cfg, device, context.report)
    one = cfg.frames == 1  # a still: its progress is in steps
    if one:
        dream_frame = with_step_bar(dream_frame, cfg)

    colors = None
    if cfg.color.reference:
        colors = color.reference(to_tensor(fit_size(read_image(cfg.color.reference, "color.reference"), w, h)),
                                 cfg.color.space)

    k = fade_length(cfg)
    inner = replace(cfg, frames=cfg.frames + 2 * k)  # loop=true: 2k frames more, the run-in's and the fade's

    def mask_from(start: int) -> Optional[Mask]:  # frame `start` of the zoom on (a clip is read forward)
        return Mask(cfg.dream.mask, (w, h), inner.frames, device, start) if cfg.dream.mask else None

    def halfway(frames: List[np.ndarray]) -> List[np.ndarray]:
        """Frames k..2k of the zoom -> the k frames its end fades into: each half way to the next, so that
        the last leads into the first output frame (2k) by half a step of the zoom."""
        return [fade(a, b, 0.5) for a, b in zip(frames, frames[1:])]

    def held_frames() -> List[np.ndarray]:
        """The fade's frames made again (a render resumed in its fade): the same as the first time."""
        made = zoom_frames(inner, to_tensor(img, device), dream_frame, 0, colors, mask=mask_from(0))
        return halfway([to_uint8(f) for f, _ in itertools.islice(made, 2 * k + 1)][k:])

    def produce(start: int, state):
        x = to_tensor(img, device) if state is None else state.get("input")
        x = None if x is None else x.to(device)
        ref = colors if state is None or state.get("colors") is None else state["colors"]
        carried = None if state is None or state.get("carried") is None else state["carried"].to(device)
        plain = None if state is None or state.get("plain") is None else state["plain"].to(device)
        plain_ref = None if state is None else state.get("plain_colors")
        held: List[np.ndarray] = []
        first = 0 if state is None else start + 2 * k  # the zoom's own frame index
        made = zoom_frames(inner, x, dream_frame, first, ref, carried, mask_from(first), plain, plain_ref)
        for t, (frame, nxt) in enumerate(made, first):
            shown = to_uint8(frame)
            if k <= t <= 2 * k:  # the frames the loop's end fades into (2k: also the output's first)
                held.append(shown)
                if t == 2 * k:
                    held = halfway(held)
            if t < 2 * k:  # the run-in, not shown
                continue
            j = t - 2 * k  # the output's frame
            if j >= cfg.frames - k:
                held = held if len(held) == k else held_frames()
                i = j - (cfg.frames - k)
                shown = fade(shown, held[i], (i + 1) / k)  # the last: half way from frame 2k-1 to the first
            yield shown, nxt  # the checkpoint copies its tensors to the host when it saves them

    if cfg.audio and not out.lower().endswith(".mp4"):
        warnings.warn(f"output={out} has no sound: the song of audio={cfg.audio} is muxed into .mp4 only",
                      stacklevel=2)
    return render(cfg, out, w, h, cfg.fps, cfg.frames, produce, frame_bar=not one, audio=cfg.audio,
                  inputs=read_files(cfg))
