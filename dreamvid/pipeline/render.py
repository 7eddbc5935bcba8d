"""The checkpointed render loop every mode's video goes through: frames from a producer into an encoder
and the checkpoint, resumed where an earlier run stopped, stopped cleanly by a signal."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..checkpoint import Checkpoint, CheckpointWriter, render_key
from ..config import Config
from ..errors import DreamvidError
from ..progress import progress
from ..stopping import StopAfterFrame, exit_code
from ..video import Encoder, TruncatedVideo, config_metadata
from .outputs import claim_config_file, config_dict, save_config

# produce(start, state) yields (frame, state for the next frame) for frames start, start + 1, ...
Producer = Callable[[int, Any], Iterator[Tuple[np.ndarray, Any]]]


class Interrupted(DreamvidError):
    """The user stopped a render (a signal); what was finished is kept and can be resumed."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def render(cfg: Config, out: str, width: int, height: int, fps: Any, total: int, produce: Producer, *,
           inputs: Sequence[Optional[str]] = (), audio: Optional[str] = None, audio_start: float = 0.0,
           lossless: bool = False, frame_bar: bool = True,
           resume_hint: Optional[str] = None, label: str = "dreaming") -> str:
    """Encode `total` frames from `produce` into `out`, checkpointing each finished frame.

    A checkpoint of the same render (same settings and inputs) is resumed: its frames are re-encoded
    and `produce` continues after the last one. A stop signal (Ctrl-C, SIGTERM, SIGHUP) stops after the
    current frame and leaves a playable partial output in the checkpoint folder. A source that ends
    early (`TruncatedVideo` from `produce`) finishes the output with the frames dreamed, then says where
    decoding stopped. What the render writes beside `out` (its settings, its checkpoint folder) is
    claimed before any work, and nothing there of anybody else's is replaced: a file made at `out`
    while the render ran stays, and the render is kept beside it (an error says where).
    frame_bar: False when `produce` shows its own progress (a single frame's steps).
    """
    cfg = replace(cfg, output=out)  # the saved config says where this output is
    config = config_dict(cfg)
    settings = claim_config_file(out, cfg.overwrite)
    ck = Checkpoint(out, render_key(config, tuple(inputs)), config, overwrite=cfg.overwrite)
    ck.lock()  # before anything is read or removed: another render of this output is refused
    try:
        loaded = ck.load()
        start, state = loaded if loaded else (0, None)
        enc = Encoder(out, width, height, fps, audio=audio, audio_start=audio_start,
                      metadata=config_metadata(config), overwrite=cfg.overwrite, lossless=lossless,
                      scratch=ck.scratch)
        enc.open()
        stopped = _encode(enc, ck, total, start, state, produce, cfg.progress and frame_bar, label,
                          resume_hint or f"dreamvid resume={out}")
        final = enc.finish()
        save_config(replace(cfg, output=final), final, settings if final == enc.path else None, scratch=ck.scratch)
        ck.clear()
    finally:
        ck.unlock()
    if final != enc.path:
        raise DreamvidError(f"{enc.path} appeared while dreamvid rendered and is left as it is; the finished render "
                            f"is {final}")
    if stopped is not None:
        raise DreamvidError(f"{stopped}; the {stopped.frames} frames dreamed are in {out}")
    return out


def _encode(enc: Encoder, ck: Checkpoint, total: int, start: int, state: Any, produce: Producer, show: bool,
            label: str, resume: str) -> Optional[TruncatedVideo]:
    """The checkpoint's frames, then `produce`'s, into `enc` and the checkpoint; the truncation that ended
    the source early, if one did."""
    writer = CheckpointWriter(ck)
    stopped: Optional[TruncatedVideo] = None
    try:
        with progress(total, label, show, initial=min(start, total)) as bar, StopAfterFrame() as stop:
            for i in range(min(start, total)):
                enc.write(ck.read_frame(i, (enc.width, enc.height)))
            t = start
            try:
                for frame, state in produce(start, state):
                    writer.add(t, frame, state)
                    enc.write(frame)
                    bar.update(1)
                    t += 1
                    if stop.requested is not None and t < total:
                        writer.close()
                        _stop_partial(enc, ck, t, total, resume, stop.requested)
            except TruncatedVideo as e:
                stopped = e  # keep what was dreamed: the output is finished below
        writer.close()
    except BaseException:
        writer.close(quiet=True)  # what was finished stays resumable
        enc.abort()
        raise
    return stopped


def _stop_partial(enc: Encoder, ck: Checkpoint, done: int, total: int, resume: str, signum: int) -> None:
    ext = ".mkv" if enc.lossless else "" if enc.kind == "png" else os.path.splitext(enc.path)[1].lower()
    partial = enc.finish(into=os.path.join(ck.dir, "partial" + ext))
    raise Interrupted(f"stopped after {done} of {total} frames; partial video: {partial}; "
                      f"resume with: {resume}", exit_code(signum))
