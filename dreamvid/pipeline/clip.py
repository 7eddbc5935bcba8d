"""Video mode: dream a clip frame by frame, each frame starting from the previous dream carried along
the optical flow, so that the dream sticks to the scene instead of flickering.

    decode -> flow -> warp -> blend -> dream -> (colour match) -> encode

After Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer for videos"): the flow between
consecutive SOURCE frames carries the previous dream onto the current frame; a forward-backward
consistency check marks the pixels the flow cannot explain (disocclusions, motion boundaries, pixels
entering the frame), which start from the fresh source frame instead. The first frame and each
frame after a scene cut (more than `coherence.cut_threshold` of the pixels unreliable) get the full
`dream.*` settings: these are keyframes. The other frames are only touched up
(`coherence.octaves` x `coherence.iterations` at the small `coherence.step`), except where the
carried dream does not cover the picture yet (entering it, uncovered): each pixel's maturity travels
with the flow, and pixels that are new take the larger `coherence.new_step` until they are dreamed.

By default only the residual (dream minus source) travels, resampled bicubically (bilinear
resampling blurs it a little more every frame, and the dream fades), on top of the fresh source
frame. A carried dream that is dreamed again every frame gains energy, so the residual's mean is
capped at the last keyframe's (`coherence.strength_cap`): brightness and saturation do not creep
over hundreds of frames. docs/video.md has the measurements behind these defaults.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..flow import FlowFn, consistency, flow_estimator, flow_pair, is_flat, to_device, warp
from ..images import to_tensor, to_uint8
from ..model import resolve_device
from ..errors import DreamvidError
from .. import schedule, segments
from ..video import TruncatedVideo, VideoMeta, probe, read_frames
from .common import SCHEDULED, ahead, frame_settings, render, resolve_output, validate_schedules, warn_if_slow
from .segments import jobs_run_elsewhere, plan_key, run_segmented
from .zoom import dreamer

WARPS = ("residual", "frame")
INTERPOLATIONS = ("bicubic", "bilinear")
LOCAL = 9  # side of the neighbourhood (pixels) whose dream strength is bounded by the keyframe's
# coherence settings evaluated per frame (each may be a schedule)
COHERENCE = SCHEDULED["coherence"]


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
    if c.interpolation not in INTERPOLATIONS:
        raise DreamvidError(f"coherence.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                            f"got {c.interpolation!r}")
    if cfg.flow.workers < 0:
        raise DreamvidError(f"flow.workers must be 0 (flow in the dreaming thread) or more, got {cfg.flow.workers}")
    if c.strength_cap < 0:
        raise DreamvidError(f"coherence.strength_cap must be 0 (off) or positive, got {c.strength_cap}")


def carry(prev_dream: torch.Tensor, prev_source: torch.Tensor, source: torch.Tensor, backward,
          mask: torch.Tensor, *, warp_mode: str = "residual", blend: float = 1.0,
          interpolation: str = "bicubic") -> torch.Tensor:
    """The image frame t starts dreaming from: the previous dream warped onto it where reliable.

    residual: source + blend * mask * warp(prev_dream - prev_source): the picture is always the
    fresh source frame, only the dream's detail travels. frame: the whole previous dream is warped
    and blended over the source with weight blend * mask. All (1, 3, H, W) in [0, 1];
    backward is the flow t -> t-1, mask (1, 1, H, W) the reliable pixels of frame t.
    """
    weight = blend * mask
    if warp_mode == "residual":
        return (source + weight * warp(prev_dream - prev_source, backward, mode=interpolation)).clamp(0.0, 1.0)
    if warp_mode == "frame":
        return (source + weight * (warp(prev_dream, backward, mode=interpolation) - source)).clamp(0.0, 1.0)
    raise DreamvidError(f"coherence.warp must be one of {', '.join(WARPS)}, got {warp_mode!r}")


def strength(x: torch.Tensor, source: torch.Tensor) -> float:
    """Mean absolute residual, 0-255 levels."""
    return float((x - source).abs().mean()) * 255.0


def local_strength(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Mean absolute residual over each pixel's 9 x 9 neighbourhood, 0-255 levels: (1, 1, H, W)."""
    r = (x - source).abs().mean(1, keepdim=True) * 255.0
    return F.avg_pool2d(r, LOCAL, stride=1, padding=LOCAL // 2, count_include_pad=False)


def keyframe_limits(x: torch.Tensor, source: torch.Tensor) -> Tuple[float, float]:
    """(mean strength, 99th percentile of the local strength) of a fully dreamed frame."""
    return strength(x, source), float(torch.quantile(local_strength(x, source).flatten().float(), 0.99))


def bound_residual(x: torch.Tensor, source: torch.Tensor, mean: float, local: float) -> torch.Tensor:
    """Scale the residual x - source down where it is stronger than a keyframe's.

    Locally, no neighbourhood above `local` (repeated touch-ups otherwise dream ever deeper into the
    regions the network likes best, such as faces); overall, a mean absolute value of at most `mean`.
    Limits of 0 or less leave x as it is.
    """
    r = x - source
    if local > 0:
        r = r * (local / local_strength(x, source).clamp_min(1e-6)).clamp(max=1.0)
    s = float(r.abs().mean()) * 255.0
    if mean > 0 and s > mean:
        r = r * (mean / s)
    return (source + r).clamp(0.0, 1.0)


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


def carry_maturity(maturity: Optional[torch.Tensor], backward, mask: torch.Tensor, blend: float) -> torch.Tensor:
    """How far each pixel of frame t is dreamed already, 0..1 (1: as far as a keyframe): frame t-1's
    maturity (None: a keyframe's, 1 everywhere) carried along the flow where it is reliable, 0 where
    the picture is new to frame t. Scaled by the blend like the carried dream: a blend below 1 lets
    the dream fade every frame, and the larger step renews it. (1, 1, H, W)."""
    weight = (blend * mask).clamp(0.0, 1.0)
    if maturity is None:
        return weight
    return warp(maturity, backward) * weight


def touch_up_step(maturity: torch.Tensor, step: float, new_step: float) -> torch.Tensor:
    """Each pixel's touch-up step: `new_step` where nothing is dreamed yet, `step` where the dream is
    grown, in between by maturity. (1, 1, H, W)."""
    return step + (new_step - step) * (1.0 - maturity)


def matured(maturity: torch.Tensor, dreamed: torch.Tensor, key_budget: float) -> torch.Tensor:
    """Maturity after a touch-up: `dreamed` is each pixel's sum of steps (steps x step size) this frame,
    counted against a keyframe's (octaves x iterations x step)."""
    if key_budget <= 0:
        return torch.ones_like(maturity)
    return (maturity + dreamed / key_budget).clamp(0.0, 1.0)


def new_state(t: int = 0) -> Dict[str, Any]:
    """Everything carried from one frame to the next (what a checkpoint must hold).

    t: the next frame's index; source: the previous source frame ((H, W, 3) uint8, for the flow);
    dream: the previous output ((1, 3, H, W) on the device; None after a flat frame: nothing to carry); keyframe: the last fully dreamed frame's
    mean and local strength (0-255 levels), which bound the carried residual; maturity: how far each
    pixel of the previous output is dreamed ((1, 1, H, W), 0..1; None after a keyframe: 1 everywhere).
    """
    return {"t": t, "source": None, "dream": None, "keyframe": (0.0, 0.0), "maturity": None}


def restore_state(saved: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """A checkpoint's state (its tensors on the CPU) made ready to continue on `device`."""
    dream, maturity = saved.get("dream"), saved.get("maturity")
    return dict(saved, dream=None if dream is None else dream.to(device),
                maturity=None if maturity is None else maturity.to(device))


def with_flow(frames: Iterable[np.ndarray], estimate: Optional[FlowFn], prev: Optional[np.ndarray],
              workers: int = 0) -> Iterator[Tuple[np.ndarray, Any]]:
    """Pair each source frame with the flows (forward, backward) between the frame before it and it.

    `prev` is the frame before the first (None at the start of a clip); without a flow method, or
    for the first frame of a clip, the flows are None. With `workers` > 0 the frames are decoded in
    a background thread and their flows computed by that many threads, a few frames ahead of the
    caller, so that decoding and flow overlap with the dreaming; the pairs are the same.
    """
    def both(a: np.ndarray, b: np.ndarray):
        return flow_pair(estimate, a, b)  # type: ignore[arg-type]

    def pairs(submit):
        before = prev
        for frame in frames:
            yield frame, (None if estimate is None or before is None else submit(both, before, frame))
            before = frame

    if workers <= 0 or estimate is None:
        yield from pairs(lambda fn, *args: fn(*args))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="dreamvid-flow") as pool:
        for frame, job in ahead(pairs(pool.submit), depth=2 * workers + 2):
            yield frame, (None if job is None else job.result())


def video_frames(cfg: Config, frames: Iterator[np.ndarray], dream_frame, device: torch.device,
                 state: Dict[str, Any], fps: float) -> Iterator[Tuple[torch.Tensor, Dict[str, Any]]]:
    """Yield (dreamed frame (1, 3, H, W), info) for each source frame; `state` is updated in place.

    To resume after frame n, pass the state saved with it and the frames from n + 1 on.
    """
    c = cfg.coherence
    estimate = flow_estimator(cfg.flow.method, cfg.flow.preset)
    prev_src = None  # the previous source frame on the device, once this loop has uploaded it
    for frame, flows in with_flow(frames, estimate, state["source"], cfg.flow.workers):
        t = state["t"]
        src = to_tensor(frame, device)
        s = frame_settings(cfg.dream, SCHEDULED["dream"], t, fps)
        k = frame_settings(c, COHERENCE, t, fps)
        start, kind, unreliable, weight = src, "key", None, None
        if is_flat(frame):  # black, a flash: dreamed afresh, and its dream is not carried to the next frame
            kind = "flat"
        elif flows is not None and state["dream"] is not None:
            fwd, bwd = (to_device(f, device) for f in flows)  # the mask and the warp on the dream's device
            mask = consistency(fwd, bwd)
            unreliable = 1.0 - float(mask.mean())
            if unreliable > c.cut_threshold:
                kind = "cut"
            else:
                kind = "warped"
                if prev_src is None:
                    prev_src = to_tensor(state["source"], device)
                start = carry(state["dream"], prev_src, src, bwd, mask,
                              warp_mode=c.warp, blend=k["blend"], interpolation=c.interpolation)
                grown = carry_maturity(state.get("maturity"), bwd, mask, k["blend"])
                pixel_step = touch_up_step(grown, k["step"], k["new_step"])
                top = max(k["step"], k["new_step"])
                if k["new_step"] != k["step"] and float(grown.min()) < 1.0:  # else all take coherence.step
                    weight = pixel_step / top
                # a keyframe's worth of steps (at this frame's dream settings), and the touch-up's count
                key_budget = int(round(s["octaves"])) * int(round(s["iterations"])) * s["step"]
                steps = int(round(k["octaves"])) * int(round(k["iterations"]))
                s = dict(s, octaves=k["octaves"], iterations=k["iterations"], step=k["step"] if weight is None else top)
        out = dream_frame(start, t, s, weight)
        if kind == "warped":
            out = bound_residual(out, src, *(c.strength_cap * v for v in state["keyframe"]))
            state["maturity"] = matured(grown, pixel_step * steps, key_budget)
        else:
            state["keyframe"] = keyframe_limits(out, src)
            state["maturity"] = None
        out = color_match(out, src, k["color_match"])
        state.update(t=t + 1, source=frame, dream=None if kind == "flat" else out)
        prev_src = src
        yield out, {"t": t, "kind": kind, "unreliable": unreliable, "strength": strength(out, src)}


def run_video(cfg: Config) -> str:
    """Dream a video clip with temporal coherence; returns the output path.

    The output keeps the source's frame rate, frame count (the first max_frames frames), duration and
    audio. It is checkpointed frame by frame like every render: the same command resumes after the
    last finished frame. A truncated source: the frames decoded are dreamed and written, then
    DreamvidError says where decoding stopped. segments=auto dreams the clip as segment jobs
    (pipeline.segments); such a job (segment=N) dreams its frames into the segments' folder.
    """
    if not cfg.input:
        raise DreamvidError("mode=video needs input=CLIP (any video ffmpeg reads: mp4, mov, mkv, webm, avi; "
                            "or a folder of frames)")
    check_coherence(cfg)
    flow_estimator(cfg.flow.method, cfg.flow.preset)  # reject a bad flow setting before any work
    meta = probe(cfg.input, cfg.fps)  # fps: the rate of a folder of frames
    size = output_size(meta, cfg.width, cfg.height)
    out = resolve_output(cfg, "dream.mp4")
    if cfg.first_frame >= meta.frames:
        raise DreamvidError(f"first_frame={cfg.first_frame}, but {cfg.input} has {meta.frames} frames "
                            f"(0 to {meta.frames - 1})")
    # frames first_frame..total-1 of the clip are dreamed; schedules count the clip's frames
    total = meta.frames if cfg.max_frames is None else min(meta.frames, cfg.first_frame + cfg.max_frames)
    validate_schedules(cfg, total, float(meta.rate), ("dream", "coherence"))  # over the clip's own length
    for name in ("step", "new_step"):
        low = min(schedule.values(getattr(cfg.coherence, name), max(total, 1), float(meta.rate), f"coherence.{name}"))
        if low < 0:
            raise DreamvidError(f"coherence.{name} must be 0 or more (a step size), got {low:g}")
    if cfg.segment is not None:
        plan = segments.load_plan(out)
        if not plan or not 0 <= cfg.segment < len(plan):
            raise DreamvidError(f"segment={cfg.segment} is set by dreamvid for the jobs of segments=auto; "
                                f"{segments.folder(out)} has no such segment")
        if segments.load_plan(out, plan_key(cfg)) is None:
            raise DreamvidError(f"segment job {cfg.segment} has other settings than the plan in "
                                f"{segments.folder(out)}: start segments=auto renders with dreamvid, not by hand")
        seg = plan[cfg.segment]
        path = segments.segment_path(out, seg.index)
        if os.path.exists(path):  # finished by an earlier run
            return path
        return dream_range(cfg, meta, size, seg.first, seg.end, path, part=True,
                           label=f"segment {seg.index + 1}/{len(plan)}")
    if not (cfg.segments == "auto" and jobs_run_elsewhere()):  # a login node's CPU does not dream them
        warn_if_slow(cfg, *size, resolve_device(cfg.device).type)
    if cfg.segments == "auto":
        return run_segmented(cfg, meta, out, size, total)
    return dream_range(cfg, meta, size, cfg.first_frame, total, out)


def dream_range(cfg: Config, meta: VideoMeta, size: Tuple[int, int], first: int, end: int, out: str, *,
                part: bool = False, label: str = "dreaming") -> str:
    """Dream source frames first..end-1 into `out` through the checkpointed render loop.

    A resumed render decodes and skips the source frames before its checkpoint (a folder's pictures
    before it are not read); the carried dream, the previous source frame and the keyframe's strength
    come from the checkpoint. A part of a clip (`part`: a segment) is written losslessly and without
    audio, to be joined.
    """
    device = resolve_device(cfg.device)
    dream_frame = dreamer(cfg, device)
    w, h = size

    def produce(start: int, saved: Optional[Dict[str, Any]]):
        state = new_state(first) if saved is None else restore_state(saved, device)
        # to the end of the clip: no limit, so that a clip cut short of its index is noticed
        _, frames = read_frames(cfg.input, (w, h), end if end < meta.frames else None, meta=meta, start=first + start)
        try:
            for x, _info in video_frames(cfg, first_frames(frames, end - first - start), dream_frame,
                                         device, state, float(meta.rate)):
                yield to_uint8(x), dict(state)  # a copy: video_frames replaces its values, never changes them
        except TruncatedVideo as e:
            if not (part and e.frames >= end):  # a segment planned to end where the damage starts is whole
                raise TruncatedVideo(str(e), e.frames - first, e.expected - first) from None  # counted from first

    audio = cfg.input if meta.has_audio and not part else None
    hint = "the same segments=auto command (it keeps what each segment finished)" if part else None
    return render(cfg, out, w, h, meta.fps, end - first, produce, inputs=(cfg.input, cfg.dream.guide),
                  audio=audio, audio_start=meta.start + float(first / meta.rate), lossless=part, resume_hint=hint,
                  label=label)


def first_frames(frames: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """The first n frames; the rest are read and dropped, so that the reader's end-of-clip checks run."""
    for i, frame in enumerate(frames):
        if i < n:
            yield frame
