"""Video mode: dream a clip frame by frame, each frame starting from the previous dream carried along
the optical flow, so that the dream sticks to the scene instead of flickering.

    decode -> flow -> warp -> blend -> dream -> (colour match) -> encode

After Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer for videos"): the flow between
consecutive SOURCE frames carries the previous dream onto the current frame; a forward-backward
consistency check marks the pixels the flow cannot explain (disocclusions, motion boundaries, pixels
entering the frame), which start from the fresh source frame instead. The first frame and each
frame after a scene cut (more than `coherence.cut_threshold` of the pixels unreliable) get the full
`dream.*` settings: these are keyframes. The other frames are only touched up
(`coherence.octaves` x `coherence.iterations` at the small `coherence.step`; with `cadence=N` only every
N-th frame is, those between are the carried dream with `cadence_touch_up` steps at most), except where the
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
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import segments, settings
from ..background import ahead
from ..coherence import (bound_residual, carry, carry_maturity, color_match, keyframe_limits, matured, strength,
                         touch_up_step)
from ..config import Config
from ..errors import DreamvidError
from ..flow import FlowFn, consistency, flow_estimator, flow_pair, is_flat, to_device
from ..images import to_tensor, to_uint8
from ..mask import Mask, composite
from ..model import resolve_device
from ..settings import frame_values
from ..video import TruncatedVideo, VideoMeta, probe, read_frames
from .checks import warn_if_slow
from .context import Context
from .dreamer import dreamer
from .outputs import read_files, resolve_output
from .render import render
from .segments import plan_key, run_segmented

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
                 state: Dict[str, Any], fps: float, dream_mask: Optional[Mask] = None) -> Iterator[Tuple[torch.Tensor, Dict[str, Any]]]:
    """Yield (dreamed frame (1, 3, H, W), info) for each source frame; `state` is updated in place.

    To resume after frame n, pass the state saved with it and the frames from n + 1 on. dream_mask
    (dream.mask): the dream where it is white, the source frame where it is black.
    """
    c = cfg.coherence
    estimate = flow_estimator(cfg.flow.method, cfg.flow.preset)
    prev_src = None  # the previous source frame on the device, once this loop has uploaded it
    cadence = max(1, int(cfg.cadence))
    for frame, flows in with_flow(frames, estimate, state["source"], cfg.flow.workers):
        t = state["t"]
        src = to_tensor(frame, device)
        s = frame_values(cfg.dream, "dream", t, fps)
        k = frame_values(c, "coherence", t, fps)
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
                if cadence > 1 and t % cadence:  # between keyframes of the cadence: carried, at most touched up
                    steps = cfg.cadence_touch_up
                    s = dict(s, octaves=1, iterations=steps)
        if kind == "warped" and s["iterations"] == 0:
            out = start
        else:
            out = dream_frame(start, t, s, weight)
        if kind == "warped":
            out = bound_residual(out, src, *(c.strength_cap * v for v in state["keyframe"]))
            state["maturity"] = matured(grown, pixel_step * steps, key_budget)
        else:
            state["keyframe"] = keyframe_limits(out, src)
            state["maturity"] = None
        out = color_match(out, src, k["color_match"])
        if dream_mask is not None:
            out = composite(out, src, dream_mask.at(t), s["mask_strength"])
        state.update(t=t + 1, source=frame, dream=None if kind == "flat" else out)
        prev_src = src
        yield out, {"t": t, "kind": kind, "unreliable": unreliable, "strength": strength(out, src)}


def in_this_process(cfg: Config, output: str, todo: Sequence[int]) -> int:
    """The launcher of a run without one: the segments of a segments=auto render one after the other, here."""
    for i in todo:
        run_video(replace(cfg, segment=i, output=output))
    return 0


def run_video(cfg: Config, context: Optional[Context] = None) -> str:
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
    context = context or Context()
    meta = probe(cfg.input, cfg.fps)  # fps: the rate of a folder of frames
    size = output_size(meta, cfg.width, cfg.height)
    out = resolve_output(cfg, "dream.mp4", context.folder)
    if cfg.first_frame >= meta.frames:
        raise DreamvidError(f"first_frame={cfg.first_frame}, but {cfg.input} has {meta.frames} frames "
                            f"(0 to {meta.frames - 1})")
    # frames first_frame..total-1 of the clip are dreamed; schedules count the clip's frames
    total = meta.frames if cfg.max_frames is None else min(meta.frames, cfg.first_frame + cfg.max_frames)
    settings.check(cfg, total, float(meta.rate), ("dream", "coherence"))  # over the clip's own length
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
        return dream_range(cfg, meta, size, seg.first, seg.end, path, part=True, report=context.report,
                           label=f"segment {seg.index + 1}/{len(plan)}")
    if not (cfg.segments == "auto" and context.elsewhere):  # a login node's CPU does not dream them
        warn_if_slow(cfg, *size, resolve_device(cfg.device).type)
    if cfg.segments == "auto":
        return run_segmented(cfg, meta, out, size, total, context.launch or in_this_process)
    return dream_range(cfg, meta, size, cfg.first_frame, total, out, report=context.report)


def dream_range(cfg: Config, meta: VideoMeta, size: Tuple[int, int], first: int, end: int, out: str, *,
                part: bool = False, label: str = "dreaming", report: Optional[Callable[[str, Any], None]] = None) -> str:
    """Dream source frames first..end-1 into `out` through the checkpointed render loop.

    A resumed render decodes and skips the source frames before its checkpoint (a folder's pictures
    before it are not read); the carried dream, the previous source frame and the keyframe's strength
    come from the checkpoint. A part of a clip (`part`: a segment) is written losslessly and without
    audio, to be joined.
    """
    device = resolve_device(cfg.device)
    dream_frame = dreamer(cfg, device, report)
    w, h = size

    def produce(start: int, saved: Optional[Dict[str, Any]]):
        state = new_state(first) if saved is None else restore_state(saved, device)
        # to the end of the clip: no limit, so that a clip cut short of its index is noticed
        _, frames = read_frames(cfg.input, (w, h), end if end < meta.frames else None, meta=meta, start=first + start)
        try:
            where = Mask(cfg.dream.mask, (w, h), end, device, first + start) if cfg.dream.mask else None
            for x, _info in video_frames(cfg, first_frames(frames, end - first - start), dream_frame,
                                         device, state, float(meta.rate), where):
                yield to_uint8(x), dict(state)  # a copy: video_frames replaces its values, never changes them
        except TruncatedVideo as e:
            if not (part and e.frames >= end):  # a segment planned to end where the damage starts is whole
                raise TruncatedVideo(str(e), e.frames - first, e.expected - first) from None  # counted from first

    # the sound: a song given (audio=) from its start, else the clip's own from the first frame dreamed
    audio = None if part else cfg.audio or (cfg.input if meta.has_audio else None)
    start = 0.0 if cfg.audio else meta.start + float(first / meta.rate)
    hint = "the same segments=auto command (it keeps what each segment finished)" if part else None
    return render(cfg, out, w, h, meta.fps, end - first, produce,
                  inputs=read_files(cfg),
                  audio=audio, audio_start=start, lossless=part, resume_hint=hint, label=label)


def first_frames(frames: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """The first n frames; the rest are read and dropped, so that the reader's end-of-clip checks run."""
    for i, frame in enumerate(frames):
        if i < n:
            yield frame
