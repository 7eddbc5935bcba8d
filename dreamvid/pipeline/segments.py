"""segments=auto: one long clip dreamed as independent segment jobs, then joined with its audio.

    plan (cuts, chunks) -> the segments dreamed as jobs by the launcher the run was given (the command
    line's: one Hydra multirun job per segment through basic, joblib, SLURM via submitit or Ray; else one
    after the other in this process) -> join (cross-fade at non-cut joins) + source audio

Everything lives in `OUTPUT.segments/`: the plan, each segment's lossless video (and its checkpoint
while it is being dreamed), the jobs' folders and logs. The same command run again dreams only the
segments that are missing; the folder is removed once the output is complete.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import List, Optional, Tuple

from .. import files, stopping
from .. import segments as S
from ..checkpoint import Checkpoint, render_key
from ..config import Config
from ..errors import DreamvidError
from ..progress import progress
from ..video import Encoder, TruncatedVideo, VideoMeta, config_metadata, read_frames
from .context import Launcher
from .outputs import claim_config_file, config_dict, read_files, save_config
from .render import Interrupted

PLAN_WIDTH = 320  # frames are compared at most this wide to find the cuts


def plan_size(meta: VideoMeta) -> Tuple[int, int]:
    if meta.width <= PLAN_WIDTH:
        return meta.size
    return PLAN_WIDTH, max(2, 2 * round(meta.height * PLAN_WIDTH / meta.width / 2))


def make_plan(cfg: Config, meta: VideoMeta, total: int) -> Tuple[List[S.Segment], Optional[str]]:
    """The segments of this clip, and why it was shortened (a truncated file; None for a whole clip)."""
    def cuts(n: Optional[int]) -> List[int]:
        frames = read_frames(meta.path, plan_size(meta), n, meta=meta)[1]
        return S.find_cuts(frames, cfg.flow.method, cfg.flow.preset, cfg.coherence.cut_threshold)

    try:
        # to the end of the clip: no limit, so that a file cut short of its index is noticed here
        return S.plan(total, cuts(total if total < meta.frames else None), cfg.segment_frames,
                      cfg.segment_overlap), None
    except TruncatedVideo as e:  # dream what can be decoded; the render says so at the end
        return S.plan(e.frames, cuts(e.frames), cfg.segment_frames, cfg.segment_overlap), str(e)


def plan_key(cfg: Config) -> str:
    """The render a plan and its segments belong to: the settings (not which segment) and the inputs."""
    return render_key(config_dict(replace(cfg, segment=None)), read_files(cfg))


def run_segmented(cfg: Config, meta: VideoMeta, out: str, size: Tuple[int, int], total: int, launch: Launcher) -> str:
    """Plan, dream the segments as jobs (`launch`: the command line's launcher, or one after the other in
    this process), join them into `out` with the source's audio.

    The output is claimed for the whole run, with the lock a plain render of it takes: a second
    segmented (or plain) render of the same output is refused instead of launching the same jobs and
    joining into the same file.
    """
    if os.path.exists(out) and not cfg.overwrite:
        raise DreamvidError(f"output exists: {out} (pass overwrite=true to replace it, or choose another output=)")
    settings = claim_config_file(out, cfg.overwrite)
    claim = Checkpoint(out, key="", overwrite=cfg.overwrite)
    claim.lock()
    try:
        S.claim(out, cfg.overwrite)
        return _run_segmented(cfg, meta, out, size, total, settings, launch)
    finally:
        claim.unlock()


def _run_segmented(cfg: Config, meta: VideoMeta, out: str, size: Tuple[int, int], total: int,
                   settings: Optional[files.Identity], launch: Launcher) -> str:
    config = config_dict(replace(cfg, output=out))  # the saved config says where this output is
    key = plan_key(cfg)
    again = "run the same command again" + ("" if cfg.output else f" with output={out}")
    plan = S.load_plan(out)
    if plan is None:
        plan, note = make_plan(cfg, meta, total)
        S.save_plan(out, plan, key, note)
    elif S.load_plan(out, key) is None:
        raise DreamvidError(f"{S.folder(out)} holds the segments of a different render (settings or input "
                            f"changed): run it with its own settings, or delete that folder to start again")
    else:
        note = S.plan_note(out)
    todo = [s.index for s in plan if not os.path.exists(S.segment_path(out, s.index))]
    if todo:
        print(f"dreamvid: {len(plan)} segment{'s' * (len(plan) != 1)}, dreaming {len(todo)} of them as jobs "
              f"(jobs' folders: {os.path.join(S.folder(out), 'jobs')})", flush=True)
        rc = launch(cfg, out, todo)
        if rc > 128 or rc < 0:  # a signal stopped the jobs (as 128 + its number, or Popen's -number)
            raise Interrupted(f"stopped; the finished segments are kept in {S.folder(out)}: {again} "
                              f"to dream the rest", rc if rc > 128 else stopping.exit_code(-rc))
    missing = [s.index for s in plan if not os.path.exists(S.segment_path(out, s.index))]
    if missing:
        raise DreamvidError(f"segments {', '.join(map(str, missing))} of {len(plan)} did not finish (logs in "
                            f"{os.path.join(S.folder(out), 'jobs')}): {again} to dream only those")
    w, h = size
    readers = (read_frames(S.segment_path(out, s.index))[1] for s in plan)
    sources = read_frames(meta.path, size, plan[-1].end, meta=meta)[1]  # for the dissolves
    sound, start = (cfg.audio, 0.0) if cfg.audio else (cfg.input if meta.has_audio else None, meta.start)
    enc = Encoder(out, w, h, meta.fps, audio=sound, audio_start=start,
                  metadata=config_metadata(config), overwrite=cfg.overwrite, scratch=S.folder(out))
    enc.open()
    try:
        with progress(plan[-1].end, "joining", cfg.progress) as bar:
            for frame in S.join(plan, readers, sources):
                enc.write(frame)
                bar.update(1)
    except BaseException:
        enc.abort()
        raise
    final = enc.finish()
    save_config(replace(cfg, output=final), final, settings if final == out else None, scratch=S.folder(out))
    S.release(out)
    if final != out:
        raise DreamvidError(f"{out} appeared while dreamvid rendered and is left as it is; the finished render "
                            f"is {final}")
    if note:
        raise DreamvidError(f"{note}; the {plan[-1].end} frames dreamed are in {out}")
    return out

