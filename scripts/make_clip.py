"""Make a realistic test clip from scikit-image's photos: camera moves, a moving object, a cut, a soundtrack.

    python scripts/make_clip.py clip.mp4                       # 256x144, 90 frames at 29.97 fps
    python scripts/make_clip.py clip.mp4 --size 640x360 --frames 300 --cut 200
    python scripts/make_clip.py pan.mp4 --size 192x108 --frames 40 --pan 9   # one pan, no cut

Shot 1 is a slow pan and zoom over the astronaut photo with the cat's head drifting across it
(a moving object that covers and uncovers the background); shot 2, after a hard cut, a slow zoom
into the rocket. Every frame is a sub-pixel crop rendered at twice the size and shrunk with area
averaging, plus a little sensor noise, encoded with H.264 like a camera clip, with a two-tone
aac soundtrack from ffmpeg's lavfi `sine` source of exactly the video's length.

With --pan PX the clip is instead one shot panning right across the rocket photo at PX pixels a
frame, at the photo's own scale: new picture enters at the right edge in every frame.

With --objects PX it is a still shot of the rocket photo with three small squares cut from the
astronaut's face (a twelfth, a sixth and a third of the height) crossing it at PX whole pixels a
frame; OUTPUT.boxes.json says where each square is in each frame, for `scripts/coherence.py --boxes`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
from skimage import data

from dreamvid.video import ffmpeg_exe


def crop_affine(cx: float, cy: float, view_w: float, out_w: int, out_h: int) -> np.ndarray:
    """The 2x3 map from output pixels to a view of width view_w centred on (cx, cy) of the photo."""
    s = view_w / out_w
    return np.array([[s, 0, cx - s * (out_w - 1) / 2], [0, s, cy - s * (out_h - 1) / 2]], np.float32)


def render(photo: np.ndarray, m: np.ndarray, w: int, h: int) -> np.ndarray:
    """Sample the photo through m at twice the size, then area-average down: no aliasing."""
    up = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]], np.float32)  # 2x grid -> 1x grid
    m2 = np.vstack([m, [0, 0, 1]]) @ up
    big = cv2.warpAffine(photo, m2[:2], (2 * w, 2 * h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def cat_sprite(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The cat's head from `chelsea`, with a soft round alpha mask."""
    cat = data.chelsea()[20:250, 90:320]
    cat = cv2.resize(cat, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) / (size / 2)
    alpha = np.clip((1.0 - r) * 6, 0, 1)[..., None].astype(np.float32)
    return cat, alpha


def paste(frame: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x: float, y: float) -> np.ndarray:
    """Composite the sprite with its top-left corner at the sub-pixel position (x, y)."""
    h, w = frame.shape[:2]
    m = np.array([[1, 0, x], [0, 1, y]], np.float32)
    s = cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    return frame * (1 - a) + s * a


def frames(w: int, h: int, n: int, cut: int, seed: int):
    rng = np.random.default_rng(seed)
    astronaut = data.astronaut().astype(np.float32)  # 512 x 512
    rocket = data.rocket().astype(np.float32)  # 427 x 640
    sprite, alpha = cat_sprite(max(8, round(h * 0.42)))
    for t in range(n):
        if t < cut:
            u = t / max(cut - 1, 1)
            # pan right and a little down while zooming in about 15 % over the shot
            m = crop_affine(200 + 110 * u, 185 + 25 * u, 360 / (1 + 0.15 * u), w, h)
            img = render(astronaut, m, w, h)
            img = paste(img, sprite, alpha, -0.3 * h + 1.3 * w * u, 0.45 * h + 0.08 * h * np.sin(3 * u))
        else:
            u = (t - cut) / max(n - cut - 1, 1)
            m = crop_affine(330 - 20 * u, 250 - 30 * u, 520 / (1 + 0.25 * u), w, h)
            img = render(rocket, m, w, h)
        img = img + rng.normal(0, 1.0, img.shape)  # sensor noise
        yield np.clip(np.round(img), 0, 255).astype(np.uint8)


def pan_frames(w: int, h: int, n: int, speed: float, seed: int):
    """A pan right at `speed` output pixels a frame over the rocket photo, one output pixel a photo pixel
    (the photo is enlarged only when the pan would run off it)."""
    rng = np.random.default_rng(seed)
    rocket = data.rocket().astype(np.float32)  # 427 x 640
    zoom = max(1.0, (w + speed * (n - 1) + 8) / rocket.shape[1], (h + 8) / rocket.shape[0])
    if zoom > 1:
        rocket = cv2.resize(rocket, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    for t in range(n):
        m = crop_affine(4 + (w - 1) / 2 + speed * t, 0.515 * rocket.shape[0], w, w, h)
        img = render(rocket, m, w, h) + rng.normal(0, 1.0, (h, w, 3))
        yield np.clip(np.round(img), 0, 255).astype(np.uint8)


def object_frames(w: int, h: int, n: int, speed: int, seed: int, boxes: list):
    """A still shot with three square sprites moving right at `speed` whole pixels a frame; appends each
    sprite's [x, y] per frame to `boxes` (one {"size", "boxes"} per sprite)."""
    sizes = [max(4, round(h / k)) for k in (12, 6, 3)]
    if speed < 1:
        raise SystemExit("make_clip: --objects takes a speed of at least 1 pixel a frame")
    if 4 + speed * (n - 1) + sizes[-1] > w:
        raise SystemExit(f"make_clip: the squares would leave a {w} px wide picture: fewer frames or a lower speed")
    return _object_frames(w, h, n, speed, seed, sizes, boxes)


def _object_frames(w: int, h: int, n: int, speed: int, seed: int, sizes: list, boxes: list):
    rng = np.random.default_rng(seed)
    rocket = data.rocket().astype(np.float32)  # 427 x 640: the whole height, centred
    background = render(rocket, crop_affine(320, 213, rocket.shape[0] * w / h, w, h), w, h)
    face = data.astronaut()[30:230, 150:350]
    tops = [round(0.06 * h), round(0.06 * h) + sizes[0] + round(0.1 * h), h - sizes[2] - round(0.06 * h)]
    sprites = [cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) for s in sizes]
    boxes.extend({"size": s, "boxes": []} for s in sizes)
    for t in range(n):
        img = background.copy()
        for sprite, size, top, box in zip(sprites, sizes, tops, boxes):
            x = 4 + speed * t
            img[top:top + size, x:x + size] = sprite
            box["boxes"].append([x, top])
        img = img + rng.normal(0, 1.0, img.shape)
        yield np.clip(np.round(img), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--size", default="256x144", help="WIDTHxHEIGHT (default 256x144)")
    p.add_argument("--frames", type=int, default=90)
    p.add_argument("--cut", type=int, default=60, help="frame of the scene cut (default 60)")
    p.add_argument("--fps", default="30000/1001")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pan", type=float, default=None, metavar="PX",
                   help="instead: one shot panning right at PX pixels a frame (no cut)")
    p.add_argument("--objects", type=int, default=None, metavar="PX",
                   help="instead: a still shot with small squares crossing it at PX pixels a frame")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    seconds = float(a.frames / Fraction(a.fps))
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", a.fps, "-i", "-",
           "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000",
           "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000",
           "-filter_complex", "[1:a][2:a]amix=inputs=2[a]", "-map", "0:v", "-map", "[a]",
           "-t", f"{seconds:.6f}", "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", a.output]
    boxes: list = []
    if a.objects is not None:
        shot = object_frames(w, h, a.frames, a.objects, a.seed, boxes)
    elif a.pan is not None:
        shot = pan_frames(w, h, a.frames, a.pan, a.seed)
    else:
        shot = frames(w, h, a.frames, a.cut, a.seed)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for frame in shot:
        proc.stdin.write(frame.tobytes())  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    if proc.wait() != 0:
        return 1
    what = (f"cut at frame {a.cut}" if a.cut < a.frames else "no cut") if a.pan is None else f"panning {a.pan:g} px a frame"
    if boxes:
        with open(a.output + ".boxes.json", "w") as f:
            json.dump({"objects": boxes}, f)
        what = f"{len(boxes)} squares crossing at {a.objects} px a frame ({a.output}.boxes.json)"
    print(f"wrote {a.output}: {w}x{h}, {a.frames} frames at {a.fps} fps, {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
