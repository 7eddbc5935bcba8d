"""Video mode: dream a clip frame by frame, each frame starting from the previous dream carried along
the optical flow, so that the dream sticks to the scene instead of flickering.

    decode -> flow -> warp -> blend -> dream -> (colour match) -> encode

After Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer for videos"): the flow between
consecutive SOURCE frames carries the previous dream onto the current frame; a forward-backward
consistency check marks the pixels the flow cannot explain (disocclusions, motion boundaries, pixels
entering the frame), which start from the fresh source frame instead. Frames that start from a
carried dream are only touched up (`coherence.iterations` x `coherence.octaves`); the first frame and
each frame after a scene cut get the full `dream.*` settings.

Carried dreams gain energy: every frame re-dreams what the last one already dreamed. The residual
(dream minus source) is therefore held to the strength of the last fully dreamed frame, the
keyframe (see `bound_residual`), so brightness and saturation do not creep over hundreds of frames.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from ..config import Config
from ..flow import consistency, flow_estimator, warp
from ..images import to_tensor, to_uint8
from ..model import DreamvidError, resolve_device
from ..video import Encoder, TruncatedVideo, VideoMeta, config_metadata, probe, read_frames
from .common import SCHEDULED, config_dict, frame_settings, progress, resolve_output, save_config
from .zoom import dreamer

WARPS = ("residual", "frame")


def output_size(meta: VideoMeta, width: Optional[int], height: Optional[int]) -> Tuple[int, int]:
    """(width, height) to dream at: the source's, or the one asked for; with one side given the other
    keeps the aspect ratio, rounded to an even number so that the mp4 needs no padding."""
    if width is None and height is None:
        return meta.size
    if width is None:
        width = max(2, 2 * round(meta.width * height / meta.height / 2))
    if height is None:
        height = max(2, 2 * round(meta.height * width / meta.width / 2))
    return int(width), int(height)


def check_coherence(cfg: Config) -> None:
    c = cfg.coherence
    if c.warp not in WARPS:
        raise DreamvidError(f"coherence.warp must be one of {', '.join(WARPS)}, got {c.warp!r}")
    if not 0.0 <= c.cut_threshold <= 1.0:
        raise DreamvidError(f"coherence.cut_threshold is a fraction of the pixels, 0..1; got {c.cut_threshold}")
    if c.strength_cap < 0:
        raise DreamvidError(f"coherence.strength_cap must be 0 (off) or positive, got {c.strength_cap}")


def carry(prev_dream: torch.Tensor, prev_source: torch.Tensor, source: torch.Tensor, backward,
          mask: torch.Tensor, *, warp_mode: str = "residual", blend: float = 0.9) -> torch.Tensor:
    """The image frame t starts dreaming from: the previous dream warped onto it where reliable.

    residual: source + blend * mask * warp(prev_dream - prev_source): the picture is always the
    fresh source frame, only the dream's detail travels. frame: the whole previous dream is warped
    and blended over the source with weight blend * mask. All (1, 3, H, W) in [0, 1];
    backward is the flow t -> t-1, mask (1, 1, H, W) the reliable pixels of frame t.
    """
    weight = blend * mask
    if warp_mode == "residual":
        return (source + weight * warp(prev_dream - prev_source, backward)).clamp(0.0, 1.0)
    if warp_mode == "frame":
        return source + weight * (warp(prev_dream, backward) - source)
    raise DreamvidError(f"coherence.warp must be one of {', '.join(WARPS)}, got {warp_mode!r}")


def strength(x: torch.Tensor, source: torch.Tensor) -> float:
    """Mean absolute residual, 0-255 levels."""
    return float((x - source).abs().mean()) * 255.0


def bound_residual(x: torch.Tensor, source: torch.Tensor, limit: float) -> torch.Tensor:
    """Scale the residual x - source down so that its mean absolute value is at most `limit` levels."""
    s = strength(x, source)
    if limit <= 0 or s <= limit:
        return x
    return (source + (x - source) * (limit / s)).clamp(0.0, 1.0)


def color_match(x: torch.Tensor, source: torch.Tensor, amount: float) -> torch.Tensor:
    """Move x's LAB mean and standard deviation towards the source's by `amount` (0..1).

    Keeps the dream's patterns while undoing a colour cast or a change of contrast.
    """
    import cv2

    if amount <= 0:
        return x
    lab = [cv2.cvtColor(np.ascontiguousarray(t[0].permute(1, 2, 0).cpu().numpy(), np.float32), cv2.COLOR_RGB2LAB)
           for t in (x, source)]
    d, s = lab
    dm, ds = d.mean((0, 1)), d.std((0, 1)) + 1e-6
    sm, ss = s.mean((0, 1)), s.std((0, 1))
    matched = (d - dm) / ds * ss + sm
    mixed = d + min(amount, 1.0) * (matched - d)
    rgb = cv2.cvtColor(mixed.astype(np.float32), cv2.COLOR_LAB2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].to(x.device).clamp(0.0, 1.0)


def new_state() -> Dict[str, Any]:
    """Everything carried from one frame to the next (what a checkpoint must hold).

    t: the next frame's index; source: the previous source frame ((H, W, 3) uint8, for the flow);
    dream: the previous output ((1, 3, H, W) on the device); keyframe: the strength (0-255 levels)
    of the last fully dreamed frame, which bounds the carried residual.
    """
    return {"t": 0, "source": None, "dream": None, "keyframe": 0.0}


def video_frames(cfg: Config, frames: Iterator[np.ndarray], dream_frame, device: torch.device,
                 state: Dict[str, Any], fps: float) -> Iterator[Tuple[torch.Tensor, Dict[str, Any]]]:
    """Yield (dreamed frame (1, 3, H, W), info) for each source frame; `state` is updated in place."""
    estimate = flow_estimator(cfg.flow.method, cfg.flow.preset)
    c = cfg.coherence
    for frame in frames:
        t = state["t"]
        src = to_tensor(frame, device)
        s = frame_settings(cfg.dream, SCHEDULED["dream"], t, fps)
        k = frame_settings(c, SCHEDULED["coherence"], t, fps)
        start, kind, unreliable = src, "key", None
        if estimate is not None and state["dream"] is not None:
            fwd, bwd = estimate(state["source"], frame), estimate(frame, state["source"])
            mask = consistency(fwd, bwd).to(device)
            unreliable = 1.0 - float(mask.mean())
            if unreliable > c.cut_threshold:
                kind = "cut"
            else:
                kind = "warped"
                start = carry(state["dream"], to_tensor(state["source"], device), src, bwd, mask,
                              warp_mode=c.warp, blend=k["blend"])
                s = dict(s, octaves=k["octaves"], iterations=k["iterations"])
        out = dream_frame(start, t, s)
        if kind == "warped":
            out = bound_residual(out, src, c.strength_cap * state["keyframe"])
        else:
            state["keyframe"] = strength(out, src)
        out = color_match(out, src, k["color_match"])
        state.update(t=t + 1, source=frame, dream=out)
        yield out, {"t": t, "kind": kind, "unreliable": unreliable, "strength": strength(out, src)}


def run_video(cfg: Config) -> str:
    """Dream a video clip with temporal coherence; returns the output path.

    The output keeps the source's frame rate, frame count (the first max_frames frames), duration and
    audio. A truncated source: the frames decoded are dreamed and written, then DreamvidError says
    where decoding stopped.
    """
    if not cfg.input:
        raise DreamvidError("mode=video needs input=CLIP (any video ffmpeg reads: mp4, mov, mkv, webm, avi)")
    check_coherence(cfg)
    flow_estimator(cfg.flow.method, cfg.flow.preset)  # reject a bad flow setting before any work
    device = resolve_device(cfg.device)
    meta = probe(cfg.input)
    w, h = output_size(meta, cfg.width, cfg.height)
    out = resolve_output(cfg, "dream.mp4")
    total = meta.frames if cfg.max_frames is None else min(meta.frames, cfg.max_frames)
    _, frames = read_frames(cfg.input, (w, h), cfg.max_frames, meta=meta)
    dream_frame = dreamer(cfg, device)
    state = new_state()
    stopped: Optional[TruncatedVideo] = None
    metadata = config_metadata(config_dict(cfg))
    with Encoder(out, w, h, meta.fps, audio=cfg.input if meta.has_audio else None, metadata=metadata,
                 overwrite=cfg.overwrite) as enc, progress(total, "dreaming", cfg.progress) as bar:
        try:
            for x, _info in video_frames(cfg, frames, dream_frame, device, state, float(meta.rate)):
                enc.write(to_uint8(x))
                bar.update(1)
        except TruncatedVideo as e:
            stopped = e  # keep what was dreamed: the encoder finishes normally below
    save_config(cfg, out)
    if stopped is not None:
        raise DreamvidError(f"{stopped}; the {stopped.frames} frames dreamed are in {out}")
    return out
