"""Make README's pictures: docs/media/zoom.gif, a strip of its frames (docs/media/zoom_frames.png), and
a photo beside its dream as a still (docs/media/still.jpg: scikit-image's astronaut, 384 px wide).

    python scripts/readme_media.py [--out docs/media] [--frames 36] [--width 320] [--height 180] [--only zoom|still]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def dreamvid(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dreamvid", *args], check=True)


def zoom_media(args, tmp: str) -> list:
    gif = os.path.join(args.out, "zoom.gif")
    frames = os.path.join(tmp, "frames")
    dreamvid(f"frames={args.frames}", f"width={args.width}", f"height={args.height}", f"device={args.device}",
             "hydra.run.dir=" + os.path.join(tmp, "run"), f"output={frames}/")
    imgs = [cv2.imread(os.path.join(frames, p)) for p in sorted(os.listdir(frames))]
    # The GIF is encoded from the same frames through the project's own encoder.
    from dreamvid.video import Encoder

    with Encoder(gif, args.width, args.height, 12, overwrite=True) as enc:
        for img in imgs:
            enc.write(np.ascontiguousarray(img[..., ::-1]))
    picks = [imgs[i] for i in np.linspace(0, len(imgs) - 1, 4).round().astype(int)]
    strip = os.path.join(args.out, "zoom_frames.png")
    cv2.imwrite(strip, np.hstack(picks))
    return [gif, strip]


def still_media(args, tmp: str) -> list:
    from skimage import data

    still = os.path.join(args.out, "still.jpg")
    photo, dreamed = os.path.join(tmp, "astronaut.png"), os.path.join(tmp, "astronaut_dream.png")
    cv2.imwrite(photo, np.ascontiguousarray(data.astronaut()[..., ::-1]))
    dreamvid(f"input={photo}", "width=384", "dream.iterations=30", f"device={args.device}",
             "hydra.run.dir=" + os.path.join(tmp, "run"), f"output={dreamed}")
    dream = cv2.imread(dreamed)
    source = cv2.resize(cv2.imread(photo), dream.shape[1::-1], interpolation=cv2.INTER_AREA)
    cv2.imwrite(still, np.hstack([source, dream]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return [still]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("docs", "media"))
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", choices=("zoom", "still"), default=None, help="make only these pictures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "zoom"):
            made += zoom_media(args, tmp)
        if args.only in (None, "still"):
            made += still_media(args, tmp)
    print("wrote " + ", ".join(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
