"""Make README's zoom pictures: docs/media/zoom.gif and a strip of frames, docs/media/zoom_frames.png.

    python scripts/readme_media.py [--out docs/media] [--frames 36] [--width 320] [--height 180]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("docs", "media"))
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gif = os.path.join(args.out, "zoom.gif")
    with tempfile.TemporaryDirectory() as tmp:
        frames = os.path.join(tmp, "frames")
        common = [f"frames={args.frames}", f"width={args.width}", f"height={args.height}",
                  f"device={args.device}", "hydra.run.dir=" + os.path.join(tmp, "run")]
        subprocess.run([sys.executable, "-m", "dreamvid", *common, f"output={frames}/"], check=True)
        pngs = sorted(os.listdir(frames))
        imgs = [cv2.imread(os.path.join(frames, p)) for p in pngs]
        # The GIF is encoded from the same frames through the project's own encoder.
        from dreamvid.video import Encoder

        with Encoder(gif, args.width, args.height, 12, overwrite=True) as enc:
            for img in imgs:
                enc.write(np.ascontiguousarray(img[..., ::-1]))
        picks = [imgs[i] for i in np.linspace(0, len(imgs) - 1, 4).round().astype(int)]
        cv2.imwrite(os.path.join(args.out, "zoom_frames.png"), np.hstack(picks))
    print(f"wrote {gif} and {os.path.join(args.out, 'zoom_frames.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
