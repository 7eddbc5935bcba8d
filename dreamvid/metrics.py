"""How coherent a dreamed clip is, measured against its source clip (streaming, memory flat).

Flow and the consistency mask M_t come from the SOURCE frames t-1 -> t (the dream must not judge itself),
at the output's size. Frames are RGB in [0, 1]; squared norms sum the three channels.

- warp error (Lai et al. 2018): mean over t of  sum M_t |V_t - warp(V_{t-1})|^2 / sum M_t.
  The source's own warp error (interpolation, noise, lighting) is the floor to compare with.
- residual flicker: the dream residual R_t = V_t - S_t (output minus source) should move with the scene.
      F_t = sum M |R_t - W_t|^2 / sum M (|R_t|^2 + |W_t|^2),   W_t = warp(R_{t-1})
  Since |R - W|^2 = |R|^2 + |W|^2 - 2 <R, W>, F_t = 1 - 2 <R, W> / (|R|^2 + |W|^2) under the mask:
  0 when the residual moves exactly with the scene (R_t = W_t), about 1 when consecutive residuals
  are unrelated (<R, W> ~ 0), 2 when they are opposite. Changes in strength alone count only a
  little: R_t = a W_t gives (1 - a)^2 / (1 + a^2), 0.005 for a = 0.9.
- dream strength: mean |V_t - S_t| in 0-255 levels, per frame; and the brightness offset, the mean
  luma of V_t - S_t, to catch a dream that creeps brighter or darker over time.

`warp` resamples bilinearly, as Lai et al. do; that blurs fine detail a little, which counts as error
in a sharp output. `interpolation="bicubic"` measures with less of that blur (for output and source).

Pairs across a scene cut (more than `cut_threshold` of the pixels unreliable) are left out of the
pair measures and listed.

`object_flicker` measures the same residual flicker inside objects whose motion is known (squares at
whole-pixel positions, `scripts/make_clip.py --objects`): no flow, so small, fast objects that the flow
cannot follow are measured too.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .flow import consistency, flow_estimator, flow_pair, warp
from .errors import DreamvidError
from .video import probe, read_frames

LUMA = (0.299, 0.587, 0.114)


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0


def pair_measures(v0: torch.Tensor, v1: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor,
                  backward, mask: torch.Tensor, interpolation: str = "bilinear") -> Dict[str, float]:
    """Warp error of output and source, and residual flicker, for one pair of frames.

    v*, s*: (1, 3, H, W) output and source frames t-1, t in [0, 1]; backward: flow t -> t-1;
    mask: (1, 1, H, W) reliable pixels of frame t.
    """
    m = mask.sum().clamp_min(1.0)
    wv, ws = warp(torch.cat([v0, s0]), backward, mode=interpolation).split(1)
    r1, wr = v1 - s1, wv - ws  # warping is linear: warp(R_{t-1}) = warp(V_{t-1}) - warp(S_{t-1})
    sq = lambda d: (d.pow(2).sum(1, keepdim=True) * mask).sum()  # noqa: E731
    energy = sq(r1) + sq(wr)
    return {"warp_error": float(sq(v1 - wv) / m), "source_warp_error": float(sq(s1 - ws) / m),
            "flicker": float(sq(r1 - wr) / energy) if energy > 0 else 0.0}


def _tenth(values: List[float], last: bool) -> float:
    k = max(1, len(values) // 10)
    part = values[-k:] if last else values[:k]
    return float(np.mean(part)) if part else math.nan


def coherence(output: str, source: str, *, method: str = "dis", preset: str = "medium",
              max_frames: Optional[int] = None, cut_threshold: float = 0.5, interpolation: str = "bilinear",
              callback: Optional[Callable[[dict], None]] = None) -> Dict[str, object]:
    """Measure a dreamed clip against its source; see the module docstring. Returns a dict of figures."""
    out_meta = probe(output)
    src_meta = probe(source)
    w, h = out_meta.size
    crop = None
    if (w, h) != src_meta.size and (w - src_meta.width, h - src_meta.height) in ((0, 1), (1, 0), (1, 1)):
        # an odd-sized source is written padded by one pixel: compare the picture itself
        crop, (w, h) = out_meta.size, src_meta.size
    estimate = flow_estimator(method, preset)
    if estimate is None:
        raise DreamvidError("the coherence measure needs a flow method: dis or farneback")
    _, outs = read_frames(output, max_frames=max_frames)
    _, srcs = read_frames(source, size=(w, h), max_frames=max_frames)
    strength: List[float] = []
    brightness: List[float] = []
    pairs: List[Dict[str, float]] = []
    cuts: List[int] = []
    luma = torch.tensor(LUMA).view(1, 3, 1, 1)
    prev = None
    for t, (o, s) in enumerate(zip(outs, srcs)):
        if crop is not None:
            o = o[:h, :w]
        v1, s1 = _tensor(o), _tensor(s)
        strength.append(float((v1 - s1).abs().mean() * 255))
        brightness.append(float(((v1 - s1) * luma).sum(1).mean() * 255))
        if prev is not None:
            s_prev, v0, s0 = prev
            fwd, bwd = flow_pair(estimate, s_prev, s)
            mask = consistency(fwd, bwd)
            if 1.0 - float(mask.mean()) > cut_threshold:
                cuts.append(t)
            else:
                pairs.append(pair_measures(v0, v1, s0, s1, bwd, mask, interpolation))
        prev = (s, v1, s1)
        if callback is not None:
            callback({"frame": t, "strength": strength[-1]})
    if not strength:
        raise DreamvidError(f"no frames to compare in {output}")
    mean = lambda key: float(np.mean([p[key] for p in pairs])) if pairs else math.nan  # noqa: E731
    warp_error, source_error = mean("warp_error"), mean("source_warp_error")
    first, last = _tenth(strength, False), _tenth(strength, True)
    return {
        "frames": len(strength),
        "pairs": len(pairs),
        "cuts": cuts,
        "flow": method if method != "dis" else f"dis/{preset}",
        "interpolation": interpolation,
        "warp_error": warp_error,
        "source_warp_error": source_error,
        "warp_error_ratio": warp_error / source_error if source_error > 0 else math.nan,
        "flicker": mean("flicker"),
        "strength": float(np.mean(strength)),
        "strength_first_tenth": first,
        "strength_last_tenth": last,
        "strength_ratio": last / first if first > 0 else math.nan,
        "brightness_first_tenth": _tenth(brightness, False),
        "brightness_last_tenth": _tenth(brightness, True),
        "series": {"strength": strength, "brightness": brightness,
                   "flicker": [p["flicker"] for p in pairs], "warp_error": [p["warp_error"] for p in pairs]},
    }


def object_flicker(output: str, source: str, objects: Sequence[Dict[str, object]], margin: int = 2,
                   max_frames: Optional[int] = None) -> List[Dict[str, float]]:
    """Residual flicker and dream strength inside squares whose position is known in every frame.

    objects: [{"size": S, "boxes": [[x, y] per frame]}], the top-left corner of an S x S square. The
    residual inside the square at t is compared with the one inside the square at t-1 (the object's own
    pixels, `margin` px in from its edges), with the whole-clip flicker's F; `source_change` is the mean
    change of the source's pixels there (0-255 levels: noise and compression). One dict per object.
    """
    out_meta, outs = read_frames(output, max_frames=max_frames)
    src_meta, srcs = read_frames(source, max_frames=max_frames)
    if out_meta.size != src_meta.size:
        raise DreamvidError(f"{output} is {out_meta.width}x{out_meta.height} and {source} "
                            f"{src_meta.width}x{src_meta.height}: the squares are measured at the source's size")
    sums = [{"num": 0.0, "den": 0.0, "strength": [], "source_change": []} for _ in objects]
    prev = None
    for t, (o, s) in enumerate(zip(outs, srcs)):
        r = o.astype(np.float32) - s.astype(np.float32)
        if prev is not None:
            r0, s0 = prev
            for obj, acc in zip(objects, sums):
                n, boxes = int(obj["size"]) - 2 * margin, obj["boxes"]  # type: ignore[call-overload, arg-type]
                if t >= len(boxes) or n < 1:
                    continue
                (x0, y0), (x1, y1) = ((int(v) + margin for v in b) for b in (boxes[t - 1], boxes[t]))
                a, b = r[y1:y1 + n, x1:x1 + n], r0[y0:y0 + n, x0:x0 + n]
                acc["num"] += float(((a - b) ** 2).sum())
                acc["den"] += float((a ** 2).sum() + (b ** 2).sum())
                acc["strength"].append(float(np.abs(a).mean()))
                acc["source_change"].append(float(np.abs(s[y1:y1 + n, x1:x1 + n].astype(np.float32)
                                                         - s0[y0:y0 + n, x0:x0 + n]).mean()))
        prev = (r, s)
    if prev is None:
        raise DreamvidError(f"no frames to compare in {output}")
    return [{"size": int(obj["size"]),  # type: ignore[call-overload]
             "flicker": acc["num"] / acc["den"] if acc["den"] > 0 else math.nan,
             "strength": float(np.mean(acc["strength"])) if acc["strength"] else math.nan,
             "source_change": float(np.mean(acc["source_change"])) if acc["source_change"] else math.nan}
            for obj, acc in zip(objects, sums)]
