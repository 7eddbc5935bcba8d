"""Pictures of a dreamed clip for the docs: source-over-dream montages and a GIF of a stretch of it.

    python scripts/video_media.py bikes.mp4 dream.mp4 --rows 105,110,115,120,125 --rows 200,206,212,218,224 \
        --montage docs/media/camera_frames.png --gif docs/media/camera.gif --gif-range 101:137

    python scripts/video_media.py pan.mp4 old.mp4 new.mp4 --rows 0,13,26,39 --montage pan.png  # compare

Each row of the montage shows the source frames (top) over the same frames of the dream (below; of
each dream, in order, when several are given), at the dream's size, scaled to --width. The GIF
plays the (first) dream's frames in --gif-range (a:b).
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from dreamvid.video import Encoder, probe, read_frames


def frames_at(path: str, size, wanted) -> dict:
    wanted = set(wanted)
    _, frames = read_frames(path, size, max(wanted) + 1)
    return {i: f for i, f in enumerate(frames) if i in wanted}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("dream", nargs="+")
    p.add_argument("--rows", action="append", default=[], help="comma-separated frame numbers, one row each")
    p.add_argument("--montage", help="PNG to write")
    p.add_argument("--width", type=int, default=1200, help="montage width in pixels")
    p.add_argument("--gif", help="GIF to write")
    p.add_argument("--gif-range", default="0:36", help="a:b, the dream's frames a..b-1")
    a = p.parse_args(argv)
    meta = probe(a.dream[0])
    if a.montage and a.rows:
        rows = [[int(v) for v in r.split(",")] for r in a.rows]
        every = [i for r in rows for i in r]
        shown = [frames_at(a.source, meta.size, every)] + [frames_at(d, meta.size, every) for d in a.dream]
        blocks = [np.concatenate([np.concatenate([f[i] for i in r], 1) for f in shown], 0) for r in rows]
        gap = np.full((6, blocks[0].shape[1], 3), 255, np.uint8)
        pic = np.concatenate([x for b in blocks for x in (b, gap)][:-1], 0)
        h = round(pic.shape[0] * a.width / pic.shape[1])
        pic = cv2.resize(pic, (a.width, h), interpolation=cv2.INTER_AREA)
        cv2.imwrite(a.montage, pic[..., ::-1])
        print(f"wrote {a.montage}")
    if a.gif:
        first, end = (int(v) for v in a.gif_range.split(":"))
        _, frames = read_frames(a.dream[0], None, end)
        with Encoder(a.gif, meta.width, meta.height, meta.fps, overwrite=True) as enc:
            for i, frame in enumerate(frames):
                if i >= first:
                    enc.write(frame)
        print(f"wrote {a.gif}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
