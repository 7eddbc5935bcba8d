"""dream.mask: the dream only where the mask is white; black keeps the undreamed picture or the source."""
import os

import cv2
import numpy as np
import pytest
import torch

from dreamvid.errors import DreamvidError
from dreamvid.mask import Mask, composite, soften

W, H = 64, 48
ZOOM = ["debug=tiny", "frames=6", f"width={W}", f"height={H}", "dream.iterations=3", "motion.angle=10"]


def half_mask(path, w=W, h=H):
    m = np.zeros((h, w, 3), np.uint8)
    m[:, w // 2:] = 255  # the right half dreams
    cv2.imwrite(str(path), m)
    return str(path)


def frames_of(folder):
    return [cv2.imread(os.path.join(folder, f)).astype(np.float32) for f in sorted(os.listdir(folder))]


def test_a_mask_is_read_as_luminance_with_soft_edges_and_mixes_the_two_pictures(tmp_path):
    m = Mask(half_mask(tmp_path / "m.png"), (W, H), 1, torch.device("cpu")).at(0)
    assert m.shape == (1, 1, H, W) and float(m[..., :20].max()) < 0.01 and float(m[..., -20:].min()) > 0.99
    edge = m[0, 0, 0, W // 2 - 3: W // 2 + 3]
    assert 0.05 < float(edge.min()) < float(edge.max()) < 0.95 or len(set(edge.tolist())) > 2  # soft, not a cut
    a, b = torch.ones(1, 3, H, W), torch.zeros(1, 3, H, W)
    mixed = composite(a, b, m, 0.5)
    assert float(mixed[..., -5:].mean()) == pytest.approx(0.5, abs=0.01) and float(mixed[..., :5].max()) < 0.01
    assert soften(np.ones((10, 10))).min() == pytest.approx(1.0)


def test_where_the_zoom_mask_is_black_the_frames_are_the_undreamed_zoom(tmp_path):
    from conftest import run_cli

    mask = half_mask(tmp_path / "m.png")
    runs = {"masked": [f"dream.mask={mask}"], "plain": ["dream.iterations=0"], "dreamed": [],
            "matched_off": [f"dream.mask={mask}", "color.match=0"], "plain_off": ["dream.iterations=0", "color.match=0"]}
    for name, extra in runs.items():
        r = run_cli(ZOOM + extra + [f"output={tmp_path / name}/"], cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
    masked, plain, dreamed, masked_off, plain_off = (frames_of(tmp_path / n) for n in runs)
    left, right = slice(0, W // 2 - 6), slice(W // 2 + 6, W)
    for m, p in zip(masked, plain):
        assert float(np.abs(m[:, left] - p[:, left]).max()) <= 1.0  # black: the undreamed zoom, to rounding
    assert float(np.abs(masked[-1][:, right] - plain[-1][:, right]).mean()) > 5.0  # white: dreamed
    assert float(np.abs(dreamed[-1][:, left] - plain[-1][:, left]).mean()) > 5.0  # unmasked, the left dreams too
    for m, p in zip(masked_off, plain_off):  # without colour matching: the same pixels
        assert float(np.abs(m[:, left] - p[:, left]).max()) <= 1.0


def test_where_the_video_mask_is_black_the_source_shows(tmp_path):
    from conftest import read_video
    from test_clip import make_config, panning, write_clip

    from dreamvid.pipeline.clip import run_video

    clip = write_clip(tmp_path / "clip.mp4", panning(n=5, seed=3), audio=False, lossless=True)
    mask = half_mask(tmp_path / "m.png", 64, 48)
    out = run_video(make_config(f"input={clip}", f"dream.mask={mask}", f"output={tmp_path / 'out.mp4'}",
                                "dream.iterations=4", "dream.step=4"))
    plain = run_video(make_config(f"input={clip}", "dream.iterations=0", "coherence.iterations=0",
                                  f"output={tmp_path / 'plain.mp4'}"))
    _, got = read_video(out)
    _, undreamed = read_video(plain)
    _, src = read_video(clip)
    assert len(got) == len(src) == 5
    for g, p, s in zip(got, undreamed, src):
        g, p, s = (f.astype(np.float32) for f in (g, p, s))
        encoding = float(np.abs(p[:, :26] - s[:, :26]).mean())  # the source through the encoder alone
        assert float(np.abs(g[:, :26] - s[:, :26]).mean()) < encoding + 1.0  # black: the source
        assert float(np.abs(g[:, 38:] - s[:, 38:]).mean()) > encoding + 3.0  # white: dreamed


def test_a_mask_clip_must_last_the_render(tmp_path):
    from test_clip import panning, write_clip

    short = write_clip(tmp_path / "m.mp4", panning(n=3), audio=False, lossless=True)
    with pytest.raises(DreamvidError, match="has 3 frames, but the render has 10"):
        Mask(short, (W, H), 10, torch.device("cpu"))
    frames = Mask(short, (W, H), 3, torch.device("cpu"), start=1)
    assert frames.at(1).shape == (1, 1, H, W) and not torch.equal(frames.at(1), frames.at(2))
