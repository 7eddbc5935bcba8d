"""The coherence measures on clips whose answer is known: a residual that moves with the scene, one
that is new every frame, and one that grows."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dreamvid.metrics import coherence, object_flicker
from dreamvid.video import ffmpeg_exe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texture(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((5, 1.0), (14, 0.6), (40, 0.4)):
        img += amp * cv2.resize(rng.random((cells, cells * w // h, 3)).astype(np.float32), (w, h),
                                interpolation=cv2.INTER_CUBIC)
    return (img - img.min()) / (img.max() - img.min())


def write_lossless(path, frames):
    """(H, W, 3) uint8 frames -> a lossless clip (ffv1), so that the measures see exactly these pixels."""
    h, w = frames[0].shape[:2]
    proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "30", "-i", "-", "-c:v", "ffv1",
                             "-pix_fmt", "bgr0", str(path)], stdin=subprocess.PIPE)
    for f in frames:
        proc.stdin.write(np.ascontiguousarray(f).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return str(path)


H, W, N = 48, 64, 12
SCENE = texture(H, W + 2 * N, 0)
DREAM = texture(H, W + 2 * N, 1) - 0.5  # a "dream residual" painted on the scene


def pan(t):
    """The scene panned 2 px per frame to the left (content moves left)."""
    return slice(None), slice(2 * t, 2 * t + W)


def to8(x):
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("metrics")
    rng = np.random.default_rng(5)
    src = [to8(0.15 + 0.7 * SCENE[pan(t)]) for t in range(N)]
    stuck = [to8(0.15 + 0.7 * SCENE[pan(t)] + 0.12 * DREAM[pan(t)]) for t in range(N)]
    fresh = [to8(0.15 + 0.7 * SCENE[pan(t)] + 0.12 * (texture(H, W, 10 + t) - 0.5)) for t in range(N)]
    growing = [to8(0.15 + 0.7 * SCENE[pan(t)] + 0.06 * (1 + t / 4) * DREAM[pan(t)]) for t in range(N)]
    noise = [np.clip(s.astype(int) + rng.integers(-2, 3, s.shape), 0, 255).astype(np.uint8) for s in src]
    names = {"src": src, "stuck": stuck, "fresh": fresh, "growing": growing, "noise": noise}
    return {k: write_lossless(d / f"{k}.mkv", v) for k, v in names.items()}


def test_a_residual_that_moves_with_the_scene_does_not_flicker(clips):
    r = coherence(clips["stuck"], clips["src"])
    assert r["frames"] == N and r["pairs"] == N - 1 and r["cuts"] == []
    assert r["flicker"] < 0.05
    assert r["warp_error"] < 1.5 * r["source_warp_error"] + 1e-4
    assert r["strength_ratio"] == pytest.approx(1.0, abs=0.05)


def test_a_new_residual_every_frame_flickers_about_one(clips):
    r = coherence(clips["fresh"], clips["src"])
    assert 0.7 < r["flicker"] < 1.3
    assert r["warp_error"] > 5 * r["source_warp_error"]


def test_the_source_against_itself_scores_zero(clips):
    r = coherence(clips["src"], clips["src"])
    assert r["flicker"] == 0.0 and r["strength"] == 0.0
    assert r["warp_error"] == pytest.approx(r["source_warp_error"])


def test_a_growing_dream_shows_in_the_strength_ratio(clips):
    r = coherence(clips["growing"], clips["src"])
    assert r["strength_ratio"] > 2.0
    assert r["flicker"] < 0.2  # it grows in place: little flicker


def test_inside_an_object_of_known_motion_a_stuck_residual_scores_zero_and_a_fresh_one_about_one(clips):
    # a 16 px patch of the scene, followed as the pan carries it 2 px left a frame
    objects = [{"size": 16, "boxes": [[40 - 2 * t, 10] for t in range(N)]}]
    stuck = object_flicker(clips["stuck"], clips["src"], objects)[0]
    fresh = object_flicker(clips["fresh"], clips["src"], objects)[0]
    assert stuck["flicker"] < 0.01 and 0.6 < fresh["flicker"] < 1.4
    assert stuck["source_change"] == 0.0 and 2 < stuck["strength"] < 10  # 0.12 x a texture in -0.5..0.5
    wrong = [{"size": 16, "boxes": [[40, 10] for t in range(N)]}]  # a box that does not follow the object
    assert object_flicker(clips["stuck"], clips["src"], wrong)[0]["flicker"] > 0.1


def test_script_prints_json(clips):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "coherence.py"), clips["noise"],
                          "--source", clips["src"], "--json"], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["frames"] == N and "series" not in r
    assert 0.0 < r["strength"] < 2.0  # +-2 levels of noise
