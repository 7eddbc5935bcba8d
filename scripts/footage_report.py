"""Dream the test footage of every container, and OpenCV's real sample clips, and measure what comes out:
rate, frame count, duration, and how far the sound is from the picture.

    python scripts/footage_report.py                 # the table of docs/video.md ("Footage")
    python scripts/footage_report.py --real-only     # OpenCV's clips only (fetched from Debian's archive)

The synthetic clips are the ones `tests/footage.py` makes (white flashes and clicks at known frames, in
each container); the sync column is the click's time minus its flash's in the dream, in milliseconds.
For the real clips it is the lag of the dream's sound behind the source's under the same frames
(cross-correlation).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import footage  # noqa: E402  (tests/footage.py: the corpus and its measurements)

from dreamvid.video import probe  # noqa: E402

DREAM = ["mode=video", "width=null", "height=null", "dream.octaves=1", "dream.iterations=1", "coherence.octaves=1",
         "coherence.iterations=1", "device=cpu", "progress=false"]


def dream(src: str, out: str, extra=()) -> float:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from dreamvid import pipeline
    from dreamvid.cli import to_config
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="dreamvid.conf", version_base=None):
        cfg = to_config(compose(config_name="config", overrides=[*DREAM, *extra, f"input={src}", f"output={out}"]))
    t = time.time()
    pipeline.run(cfg)
    return time.time() - t


def synthetic(folder: str) -> None:
    print("| clip | codec, sound | source: rate, frames, s | dream: rate, frames, s | flashes on the right frame | "
          "sync, click - flash (ms) |")
    print("|---|---|---|---|---|---|")
    for clip in footage.CORPUS:
        src = footage.make(clip, folder)
        meta = probe(src)
        out = os.path.join(folder, clip.name + ".dream.mp4")
        dream(src, out)
        got = probe(out)
        flashes, rate, _ = footage.video_flashes(out)
        want = [round(t * float(rate)) for t in footage.expected(clip)["flashes"]]
        heard = footage.clicks(footage.audio_of(out))
        sync = [1000 * (c - f / float(rate)) for c, f in zip(heard, flashes)]
        right = sum(abs(a - b) <= 1 for a, b in zip(flashes, want))
        print(f"| {clip.name} | {meta.codec}, {meta.audio_codec} | {meta.fps}{' (vfr)' if meta.vfr else ''}, "
              f"{meta.frames}, {meta.duration:.3f} | {got.fps}, {got.frames}, {got.duration:.3f} | "
              f"{right} of {len(want)} | {', '.join(f'{s:+.0f}' for s in sync)} |")


def real(folder: str) -> None:
    clips, why = footage.real_clips(folder)
    if clips is None:
        print(f"(OpenCV's clips: {why})")
        return
    print("| clip | codec, sound | rate, frames, s | dream: rate, frames, s | sound lag (ms) | time |")
    print("|---|---|---|---|---|---|")
    for name in ("Megamind.avi", "tree.avi", "vtest.avi"):
        src = clips[name]
        meta = probe(src)
        out = os.path.join(folder, name + ".dream.mp4")
        seconds = dream(src, out, ["width=160"] + (["max_frames=100"] if name == "vtest.avi" else []))  # 100 of 795
        got = probe(out)
        lag = "-"
        if meta.has_audio:
            lag = f"{1000 * footage.lag(footage.audio_of(src, meta.start, got.duration), footage.audio_of(out)):+.0f}"
        print(f"| {name} | {meta.codec}, {meta.audio_codec or 'none'} | {meta.fps}{' (vfr)' if meta.vfr else ''}, "
              f"{meta.frames}, {meta.duration:.3f} | {got.fps}, {got.frames}, {got.duration:.3f} | {lag} | "
              f"{seconds:.0f} s |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real-only", action="store_true")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        if not a.real_only:
            synthetic(folder)
            print()
        real(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
