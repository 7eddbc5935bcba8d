"""Splitting one long clip into segments that separate workers dream, and joining them again.

A clip is cut where its scene changes (most pixels have no reliable optical flow from the previous
frame: the test video mode uses to restart its dream) and, where a scene is longer than
`segment_frames`, into chunks of about equal length. A segment that starts at a cut starts fresh, as
the video mode would there anyway. A segment that starts inside a scene also dreams the `overlap`
frames before its start (its lead); when the segments are joined those frames are cross-faded from
the previous segment's dream into this one's, so the join is a short dissolve rather than a jump.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .flow import consistency, flow_estimator
from .model import DreamvidError

PLAN_FILE = "plan.json"
SUFFIX = ".segments"


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of the output; frames [start - lead, start) are dreamed too, to cross-fade."""

    index: int
    start: int
    end: int
    lead: int = 0

    @property
    def first(self) -> int:
        """The first source frame this segment dreams."""
        return self.start - self.lead

    @property
    def frames(self) -> int:
        return self.end - self.first


def find_cuts(frames: Iterable[np.ndarray], method: str = "dis", preset: str = "fast",
              threshold: float = 0.5) -> List[int]:
    """Indices of the frames that start a new scene: more than `threshold` of their pixels unreliable.

    The same forward-backward test video mode uses to restart its dream; no flow method, no cuts
    (the frames are still read to the end, so that a damaged clip is noticed).
    """
    estimate = flow_estimator(method, preset)
    cuts, prev = [], None
    for t, frame in enumerate(frames):
        if prev is not None and estimate is not None:
            mask = consistency(estimate(prev, frame), estimate(frame, prev))
            if 1.0 - float(mask.mean()) > threshold:
                cuts.append(t)
        prev = frame
    return cuts


def plan(total: int, cuts: Sequence[int], max_frames: int, overlap: int) -> List[Segment]:
    """Segments covering frames 0..total-1: split at every cut, then scenes longer than `max_frames`
    into near-equal chunks, each of which (after the first of its scene) leads in by `overlap` frames."""
    if total < 1:
        raise DreamvidError(f"a clip to split needs at least one frame, got {total}")
    if max_frames < 1:
        raise DreamvidError(f"segment_frames must be at least 1, got {max_frames}")
    if overlap < 0:
        raise DreamvidError(f"segment_overlap must be 0 or more, got {overlap}")
    bounds = [0] + sorted(c for c in set(cuts) if 0 < c < total) + [total]
    segments: List[Segment] = []
    for a, b in zip(bounds, bounds[1:]):
        n = -(-(b - a) // max_frames)  # chunks in this scene
        edges = [a + round(i * (b - a) / n) for i in range(n + 1)]
        for i, (s, e) in enumerate(zip(edges, edges[1:])):
            lead = 0 if i == 0 else min(overlap, s - edges[i - 1])
            segments.append(Segment(len(segments), s, e, lead))
    return segments


def crossfade(previous: Sequence[np.ndarray], current: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Dissolve from `previous` into `current` (the same source frames dreamed by two segments):
    frame k of n weighs the current segment (k + 1) / (n + 1)."""
    n = len(previous)
    if len(current) != n:
        raise ValueError(f"overlaps differ in length: {n} and {len(current)} frames")
    out = []
    for k, (p, c) in enumerate(zip(previous, current)):
        a = (k + 1) / (n + 1)
        out.append(np.round(p.astype(np.float32) * (1 - a) + c.astype(np.float32) * a).astype(np.uint8))
    return out


def join(segments: Sequence[Segment], readers: Iterable[Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
    """The output's frames from each segment's frames (in order), cross-fading the leads.

    Holds back only the frames the next segment's lead overlaps: memory is flat in clip length.
    """
    held: List[np.ndarray] = []
    for i, (seg, frames) in enumerate(zip(segments, readers)):
        keep = segments[i + 1].lead if i + 1 < len(segments) else 0
        frames = iter(frames)
        lead = [frame for _, frame in zip(range(seg.lead), frames)]
        if len(lead) != seg.lead:
            raise DreamvidError(f"segment {seg.index} ended early: {len(lead)} of its {seg.frames} frames")
        for frame in crossfade(held, lead) if seg.lead else []:
            yield frame
        body, got = seg.end - seg.start, 0
        held = []
        for frame in frames:
            if got >= body:
                raise DreamvidError(f"segment {seg.index} has more than its {seg.frames} frames")
            if got >= body - keep:
                held.append(frame)
            else:
                yield frame
            got += 1
        if got != body:
            raise DreamvidError(f"segment {seg.index} ended early: {seg.lead + got} of its {seg.frames} frames")
    yield from held


def folder(output: str) -> str:
    """Where a segmented render keeps its plan, its segments' videos and their jobs' folders."""
    return output.rstrip("/").rstrip(os.sep) + SUFFIX


def segment_path(output: str, index: int) -> str:
    return os.path.join(folder(output), f"segment_{index:04d}.mkv")


def save_plan(output: str, segments: Sequence[Segment], key: str, note: Optional[str] = None) -> str:
    """Write the plan of a render (`key`), with a note on why the clip is shorter than it says, if it is."""
    os.makedirs(folder(output), exist_ok=True)
    path = os.path.join(folder(output), PLAN_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"key": key, "note": note, "segments": [asdict(s) for s in segments]}, f, indent=1)
    os.replace(tmp, path)
    return path


def _plan_data(output: str) -> Optional[dict]:
    path = os.path.join(folder(output), PLAN_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_plan(output: str, key: Optional[str] = None) -> Optional[List[Segment]]:
    """The saved plan of this render (None when there is none, or it belongs to other settings)."""
    data = _plan_data(output)
    if data is None or key is not None and data.get("key") != key:
        return None
    return [Segment(**s) for s in data["segments"]]


def plan_note(output: str) -> Optional[str]:
    """Why the planned clip is shorter than its file says (a truncated file), or None."""
    data = _plan_data(output)
    return data.get("note") if data else None
