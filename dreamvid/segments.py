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
import re
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from . import files
from .flow import consistency, flow_estimator, flow_pair, is_flat
from .errors import DreamvidError

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

    The same forward-backward test video mode uses to restart its dream; and where a run of flat frames
    (black, a flash: `is_flat`) begins or ends, where video mode starts afresh too. No flow method, no
    cuts (the frames are still read to the end, so that a damaged clip is noticed).
    """
    estimate = flow_estimator(method, preset)
    cuts, prev, prev_flat = [], None, False
    for t, frame in enumerate(frames):
        flat = is_flat(frame)
        if prev is not None and estimate is not None:
            if flat != prev_flat:
                cuts.append(t)
            elif not flat:
                mask = consistency(*flow_pair(estimate, prev, frame))
                if 1.0 - float(mask.mean()) > threshold:
                    cuts.append(t)
        prev, prev_flat = frame, flat
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


def dissolve(previous: np.ndarray, current: np.ndarray, a: float, source: Optional[np.ndarray] = None) -> np.ndarray:
    """One frame of a dissolve: weight a on `current`, 1 - a on `previous`.

    With the source frame the two are mixed as dreams over it: their residuals (dream - source) are
    mixed and the mix is scaled to the interpolated strength of the two, so that two unrelated dreams
    half-way through do not average out to a fainter one (plain mixing: about 0.7 of the strength).
    """
    p, c = previous.astype(np.float32), current.astype(np.float32)
    if source is None:
        return np.round(p * (1 - a) + c * a).astype(np.uint8)
    s = source.astype(np.float32)
    rp, rc = p - s, c - s
    mix = rp * (1 - a) + rc * a
    target = (1 - a) * np.abs(rp).mean() + a * np.abs(rc).mean()
    have = float(np.abs(mix).mean())
    if have > 1e-6:
        mix *= target / have
    return np.clip(np.round(s + mix), 0, 255).astype(np.uint8)


def crossfade(previous: Sequence[np.ndarray], current: Sequence[np.ndarray],
              sources: Optional[Sequence[np.ndarray]] = None) -> List[np.ndarray]:
    """Dissolve from `previous` into `current` (the same source frames dreamed by two segments):
    frame k of n weighs the current segment (k + 1) / (n + 1)."""
    n = len(previous)
    if len(current) != n or sources is not None and len(sources) != n:
        raise ValueError(f"overlaps differ in length: {n} and {len(current)} frames")
    return [dissolve(p, c, (k + 1) / (n + 1), None if sources is None else sources[k])
            for k, (p, c) in enumerate(zip(previous, current))]


def join(segments: Sequence[Segment], readers: Iterable[Iterator[np.ndarray]],
         sources: Optional[Iterable[np.ndarray]] = None) -> Iterator[np.ndarray]:
    """The output's frames from each segment's frames (in order), cross-fading the leads.

    `sources`, the source frames at the output's size from the first one, make the dissolves keep
    the dream's strength (see `dissolve`). Holds back only the frames the next segment's lead
    overlaps: memory is flat in clip length.
    """
    src = iter(sources) if sources is not None else None

    def source() -> Optional[np.ndarray]:
        if src is None:
            return None
        frame = next(src, None)
        if frame is None:
            raise DreamvidError("the source clip ended before the dreamed segments")
        return frame

    held: List[np.ndarray] = []
    for i, (seg, frames) in enumerate(zip(segments, readers)):
        keep = segments[i + 1].lead if i + 1 < len(segments) else 0
        frames = iter(frames)
        lead = [frame for _, frame in zip(range(seg.lead), frames)]
        if len(lead) != seg.lead:
            raise DreamvidError(f"segment {seg.index} ended early: {len(lead)} of its {seg.frames} frames")
        if seg.lead:
            yield from crossfade(held, lead, None if src is None else [source() for _ in lead])
        body, got = seg.end - seg.start, 0
        held = []
        for frame in frames:
            if got >= body:
                raise DreamvidError(f"segment {seg.index} has more than its {seg.frames} frames")
            if got >= body - keep:
                held.append(frame)
            else:
                source()
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


# What the segments' folder holds of dreamvid's own: the plan, each segment's video, its settings and its
# checkpoint while it is dreamed, the jobs' folders (Hydra's records of them), the joined output while encoded
_OWN = re.compile(r"plan\.json(\.tmp)?|segment_\d{4,}\.mkv(\.yaml|\.state)?|jobs|output\.partial(\.mux)?|"
                  r"config\.partial")


def _ours(name: str) -> bool:
    return bool(_OWN.fullmatch(name))


def claim(output: str, overwrite: bool = False) -> None:
    """Make the segments' folder of `output` dreamvid's own, or refuse in one line (a folder of the user's)."""
    files.claim_folder(folder(output), f"the segments of {os.path.basename(output.rstrip('/'))}", _ours, overwrite)


def release(output: str) -> None:
    """Remove what dreamvid wrote in the segments' folder, and the folder unless something else is in it."""
    files.release_folder(folder(output), _ours)


def save_plan(output: str, segments: Sequence[Segment], key: str, note: Optional[str] = None) -> str:
    """Write the plan of a render (`key`), with a note on why the clip is shorter than it says, if it is."""
    claim(output)
    path = os.path.join(folder(output), PLAN_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"key": key, "note": note, "segments": [asdict(s) for s in segments]}, f, indent=1)
    files.replace(tmp, path)
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
