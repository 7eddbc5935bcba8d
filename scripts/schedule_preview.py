#!/usr/bin/env python
"""Plot a schedule over the frames of a render into a PNG, to check it before rendering.

    python scripts/schedule_preview.py "smooth: 0:(1.0), 48:(1.5), 96:(1.0)" --frames 120 --fps 24 --out zoom.png

A schedule that starts with a minus sign goes after `--`:  ... --out a.png -- "-1 + t/10"
"""
from __future__ import annotations

import argparse
import os
import sys

try:
    from dreamvid import schedule
    from dreamvid.errors import DreamvidError
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dreamvid import schedule
    from dreamvid.errors import DreamvidError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Plot a dreamvid schedule (keyframes or expression) into a PNG.")
    ap.add_argument("schedule", help='a number or a schedule, e.g. "0:(1.0), 48:(1.05), 96:(1.0)"')
    ap.add_argument("--frames", type=int, default=96, help="frames to plot (default 96)")
    ap.add_argument("--fps", type=float, default=12.0, help="frames per second, for s and fps (default 12)")
    ap.add_argument("--out", default="schedule.png", help="PNG file to write (default schedule.png)")
    ap.add_argument("--name", default="setting", help="setting name for the title, e.g. motion.zoom")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error("--frames must be at least 1")
    if not args.fps > 0:
        ap.error("--fps must be positive")
    try:
        path = schedule.preview(args.schedule, args.frames, args.fps, args.out, name=args.name)
        values = schedule.values(args.schedule, args.frames, args.fps, name=args.name)
    except DreamvidError as e:
        print(f"schedule_preview: error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: {args.name} over {args.frames} frames at {args.fps:g} fps, "
          f"min {min(values):.6g}, max {max(values):.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
