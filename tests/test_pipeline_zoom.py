"""Zoom mode's frame loop: motion follows the (scheduled) settings frame by frame."""
import math
import os

import numpy as np
import torch

from conftest import make_config
from dreamvid.pipeline.zoom import zoom_frames


def _dot_distance(x: torch.Tensor) -> float:
    """Distance from the image centre to the brightness-weighted centre of the marker."""
    img = x[0, 0]
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    m = img.double()
    cy, cx = float((m * ys).sum() / m.sum()), float((m * xs).sum() / m.sum())
    return math.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)


def test_a_scheduled_zoom_changes_speed_where_the_schedule_says():
    fps = 10
    cfg = make_config("frames=12", f"fps={fps}", "motion.zoom='0:(1.0), 4:(1.0), 5:(2.0), 12:(2.0)'",
                      "motion.border=border")
    yy, xx = torch.meshgrid(torch.arange(121.0), torch.arange(121.0), indexing="ij")
    blob = torch.exp(-((xx - 70) ** 2 + (yy - 60) ** 2) / (2 * 2.0**2))  # a marker 10 px right of the centre
    x = blob.expand(1, 3, 121, 121).clone()
    frames = [f for f, _ in zoom_frames(cfg, x, lambda img, t, s: img)]
    d = [_dot_distance(f) for f in frames]
    still = [d[t + 1] / d[t] for t in range(0, 4)]
    moving = [d[t + 1] / d[t] for t in range(5, 9)]
    assert all(abs(r - 1.0) < 1e-3 for r in still), still  # zoom 1.0: the marker stays put
    assert all(abs(r - 2.0 ** (1 / fps)) < 0.01 for r in moving), moving  # 2x per second, compounded


def test_a_layer_weight_schedule_keeps_one_objective_and_dreams_each_frames_weights(monkeypatch):
    from dreamvid import dream as D
    from dreamvid.model import feature_net
    from dreamvid.pipeline import zoom

    layers = ["blocks.4", "blocks.6"]
    cfg = make_config("model.layers=[blocks.4,blocks.6]", "dream.layer_weights=[1,'0:(0), 4:(2)']",
                      "dream.guide_weight=1", "speed.tile=0", "speed.fold_bn=off", "speed.channels_last=off")
    made = []
    real = D.make_objective
    monkeypatch.setattr(D, "make_objective", lambda *a, **k: made.append(1) or real(*a, **k))
    dream_frame = zoom.dreamer(cfg, torch.device("cpu"))
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    s = {"octaves": 1, "octave_scale": 1.4, "iterations": 2, "step": 1.5, "jitter": 8, "guide_weight": 1.0}
    feats = feature_net("lite0", layers)
    for t in (0, 2, 4):
        out = dream_frame(x, t, s)
        ref = D.dream(x, real(feats, layers, [1.0, t / 2]), octaves=1, iterations=2, step=1.5, jitter=8,
                      generator=D.image_generator(cfg.seed, t))
        assert torch.equal(out, ref), t
    assert len(made) == 1  # the weights changed in place: one objective, so CUDA graphs are kept


def _adds(amount: float):
    """A stand-in dream that adds `amount` to every pixel, counting its calls."""
    calls = []

    def dream(img, t, s, weight=None):
        calls.append((t, s["iterations"], s["step"]))
        return (img + amount).clamp(0, 1)

    return dream, calls


def test_cadence_dreams_every_nth_frame_and_eases_each_dream_in_evenly():
    cfg = make_config("frames=7", "motion.zoom=1", "cadence=3", "cadence_touch_up=0", "color.match=0")
    x = torch.full((1, 3, 16, 16), 0.1)
    dream, calls = _adds(0.3)
    shown = [float(f.mean()) for f, _ in zoom_frames(cfg, x, dream)]
    assert [t for t, _, _ in calls] == [0, 3, 6]  # keyframes only (no touch-up asked for)
    assert all(step == 3 * cfg.dream.step for _, _, step in calls)  # three frames' worth of growth in one
    steps = [b - a for a, b in zip([0.1] + shown, shown)]
    assert all(abs(s - 0.1) < 1e-6 for s in steps), steps  # each frame a third of a dream: no jump at 3 and 6


def test_a_render_resumed_between_keyframes_makes_the_same_frames():
    cfg = make_config("frames=8", "cadence=3", "cadence_touch_up=1", "motion.zoom=1.5", "motion.angle=20")
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    dream, _ = _adds(0.05)
    whole = list(zoom_frames(cfg, x, dream))
    state = whole[4][1]  # saved with frame 4: what frame 5 needs
    again = list(zoom_frames(cfg, state.get("input"), dream, 5, state["colors"], state["carried"]))
    assert "input" not in state and "input" in whole[5][1]  # only before a keyframe is its input made
    assert all(torch.equal(a[0], b[0]) for a, b in zip(whole[5:], again))


def test_colour_coherence_matches_each_frame_to_the_first():
    from dreamvid import color

    cfg = make_config("frames=5", "motion.zoom=1")  # matched by default
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2)) * 0.5
    redder = lambda img, t, s, weight=None: (img * torch.tensor([1.1, 0.95, 0.95]).view(1, 3, 1, 1)).clamp(0, 1)  # noqa: E731
    frames = [f for f, _ in zoom_frames(cfg, x, redder)]
    drift = [float(f[0, 0].mean() - f[0, 1].mean()) for f in frames]
    assert abs(drift[-1] - drift[0]) < 0.02  # matched: the cast does not build up
    plain = [f for f, _ in zoom_frames(make_config("frames=5", "motion.zoom=1", "color.match=0"), x, redder)]
    assert float(plain[-1][0, 0].mean() - plain[-1][0, 1].mean()) - drift[0] > 0.05  # unmatched, it does
    ref = color.reference(frames[0])
    assert torch.equal(color.match(frames[3], ref, 0.0), frames[3])


def test_a_reference_picture_gives_every_frame_its_colours(tmp_path):
    import cv2

    from dreamvid import color
    from dreamvid.pipeline.zoom import run_zoom

    warm = np.zeros((24, 32, 3), np.uint8)
    warm[..., 0], warm[..., 1], warm[..., 2] = 200, 120, 40  # orange (RGB); the clouds are blue
    warm[::2] = warm[::2] // 2
    cv2.imwrite(str(tmp_path / "palette.png"), warm[..., ::-1])
    cfg = make_config("frames=2", "width=48", "height=32", f"color.reference={tmp_path / 'palette.png'}",
                      f"output={tmp_path / 'out'}/", "dream.iterations=1", "dream.octaves=1")
    out = run_zoom(cfg)
    frames = [cv2.imread(os.path.join(out, f))[..., ::-1] for f in sorted(os.listdir(out))]
    assert len(frames) == 2
    for f in frames:
        r, g, b = (float(f[..., c].mean()) for c in range(3))
        assert r > g > b, (r, g, b)  # orange, not the blue of the clouds
    assert color.SPACES[0] == "rgb"


def test_deforum_units_move_per_frame():
    from dreamvid.pipeline.zoom import move

    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    per_frame = make_config("motion.units=frame", "motion.zoom='0:(1.04)'", "motion.angle=2", "motion.tx=3", "fps=12")
    per_second = make_config(f"motion.zoom={1.04 ** 12}", "motion.angle=24", "motion.tx=36", "fps=12")
    assert torch.allclose(move(per_frame, x, 0), move(per_second, x, 0), atol=1e-5)


def _frames(folder):
    import cv2

    return [cv2.imread(os.path.join(folder, f)).astype(np.float32) for f in sorted(os.listdir(folder))]


LOOP = ["debug=tiny", "frames=20", "fps=6", "width=64", "height=48", "dream.iterations=3", "loop=true",
        "motion.angle=20"]


def test_a_loop_leads_from_its_last_frame_into_its_first_and_resumes_in_its_fade(tmp_path):
    import signal

    from conftest import run_cli, start_cli, wait_for_frames

    ref = tmp_path / "ref"
    r = run_cli(LOOP + [f"output={ref}/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    frames = _frames(ref)
    assert len(frames) == 20
    steps = [float(np.abs(b - a).mean()) for a, b in zip(frames, frames[1:])]
    wrap = float(np.abs(frames[0] - frames[-1]).mean())
    assert wrap <= float(np.median(steps)), (wrap, float(np.median(steps)), [round(v, 2) for v in steps])  # no larger than a step
    plain = tmp_path / "plain"
    assert run_cli([a for a in LOOP if a != "loop=true"] + [f"output={plain}/"], cwd=str(tmp_path)).returncode == 0
    unlooped = _frames(plain)
    assert float(np.abs(unlooped[0] - unlooped[-1]).mean()) > 3 * wrap  # without it the zoom jumps back

    out = tmp_path / "run"  # stopped in the fade (it starts at frame 14), then resumed: the same frames
    proc = start_cli(LOOP + [f"output={out}/"], str(tmp_path))
    wait_for_frames(str(out) + ".state", 16, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    r = run_cli(LOOP + [f"output={out}/"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert all(np.array_equal(a, b) for a, b in zip(_frames(out), frames)) and len(_frames(out)) == 20
