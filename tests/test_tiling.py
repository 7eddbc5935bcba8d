import warnings

import pytest
import torch

from dreamvid import dream as D
from dreamvid import fast, tiling
from dreamvid.model import feature_net
from dreamvid.errors import DreamvidError

LAYERS = ["blocks.4"]


@pytest.fixture(scope="module")
def feats():
    return feature_net("lite0", LAYERS)


def image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def energy(v):
    """A per-pixel objective: its gradient at a pixel does not depend on the neighbours."""
    return v.pow(3).sum()


def test_tile_starts_cover_the_image_with_equal_overlapping_tiles():
    for length, tile, overlap in [(224, 128, 32), (500, 128, 64), (129, 128, 16), (1000, 256, 64)]:
        for phase in (0, 7, tile - overlap - 1):
            starts = tiling.tile_starts(length, tile, overlap, phase)
            assert starts[0] == 0 and starts[-1] == length - tile
            assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap at least `overlap`
            assert starts == sorted(set(starts))
    assert tiling.tile_starts(100, 128, 32) == [0]
    # the phase moves the inner seams
    assert tiling.tile_starts(500, 128, 32, 0) != tiling.tile_starts(500, 128, 32, 40)
    with pytest.raises(DreamvidError, match="smaller than the tile"):
        tiling.tile_starts(500, 64, 64)


def test_tiled_step_equals_the_untiled_step_for_a_per_pixel_objective():
    """Jitter, grid shift, blending and the global normalisation together: exact where the objective is local."""
    x = image(70, 150)
    for seed in range(3):
        a = tiling.tiled_step(x, energy, step=1.0, jitter=16, generator=torch.Generator().manual_seed(seed),
                              tile=48, overlap=16)
        b = D.dream_step(x, energy, step=1.0, jitter=16, generator=torch.Generator().manual_seed(seed))
        assert (a - b).abs().max() < 1e-5


def test_tiled_and_untiled_dreams_agree_away_from_the_seams(feats):
    x = image(64, 224)
    objective = D.make_objective(feats, LAYERS)
    whole = D.dream_step(x, objective, step=1.5, jitter=0)
    tiled = tiling.tiled_step(x, objective, step=1.5, jitter=0, tile=128, overlap=32, shift_grid=False)
    # tiles [0, 128) and [96, 224): the blend zone is columns 96..127
    diff = (whole - tiled).abs().mean(dim=(0, 1, 2)) * 255  # per column, 0-255 levels
    change = float((whole - x).abs().mean()) * 255  # 1.5 levels
    assert diff[:48].max() < 0.02 * change and diff[-48:].max() < 0.02 * change
    assert diff.mean() < 0.1 * change
    assert diff[96:128].max() > diff[:48].max()  # the seam is where they differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_tiles_with_graphed_gradients_equal_plain_tiles_on_cuda(feats):
    import copy

    net = copy.deepcopy(feats).cuda()  # a copy: the CPU tests share the backbone
    objective = D.make_objective(net, LAYERS)
    graphed = fast.Stepper(fast.Plan("fp32", False, True))
    x = image(160, 224).cuda()
    a = b = x
    for i in range(fast.WARMUP_STEPS + 3):  # 2 x 2 tiles of one shape: eager warm-up, capture, replays
        a = tiling.tiled_step(a, objective, jitter=8, generator=torch.Generator().manual_seed(i), tile=128,
                              overlap=32, stepper=graphed)
        b = tiling.tiled_step(b, objective, jitter=8, generator=torch.Generator().manual_seed(i), tile=128,
                              overlap=32)
    assert graphed.captures == 1
    assert (a - b).abs().max() < 1e-3  # each tile's gradient used before the next replay overwrites it


def test_a_small_octave_in_one_tile_takes_the_plain_step(feats):
    x = image(48, 64)
    objective = D.make_objective(feats, LAYERS)
    a = tiling.tiled_step(x, objective, jitter=8, generator=torch.Generator().manual_seed(2), tile=64)
    b = D.dream_step(x, objective, jitter=8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_plan_tile_from_a_memory_budget():
    bpp = 4000.0  # bytes per pixel
    assert tiling.plan_tile(bpp, 1080, 1920, 100 * 2**30) == 0  # fits whole
    tile = tiling.plan_tile(bpp, 2160, 3840, 4 * 2**30)
    assert 0 < tile < 2160 and tile % tiling.GRANULE == 0
    fixed = tiling.FULL_SIZE_BUFFERS * 3 * 2160 * 3840 * 4 + tiling.RESERVE
    assert fixed + bpp * tiling.PEAK_OVER_SAVED * tile**2 <= 4 * 2**30
    assert fixed + bpp * tiling.PEAK_OVER_SAVED * (tile + tiling.GRANULE) ** 2 > 4 * 2**30  # the largest that fits
    # with CUDA graphs a captured step's pool is held while the next shape warms up: two steps fit
    graphed = tiling.plan_tile(bpp, 2160, 3840, 4 * 2**30, steps=2)
    assert 0 < graphed < tile
    assert fixed + 2 * bpp * tiling.PEAK_OVER_SAVED * graphed**2 <= 4 * 2**30
    with pytest.raises(DreamvidError, match="even in"):
        tiling.plan_tile(bpp, 2160, 3840, 1 * 2**30)


def test_auto_tile_size_from_free_memory(feats, monkeypatch):
    bpp = tiling.saved_bytes_per_pixel(feats, LAYERS)
    assert 100 < bpp < 100_000
    # on a CPU, what measured fastest: whole frames up to CPU_WHOLE, else tiles planned for CPU_TILES, within
    # the host's memory; a frame whose own buffers outgrow the caps is tiled in all the memory there is
    monkeypatch.setattr(tiling, "available_host_memory", lambda: 20 * 2**30)
    assert tiling.plan_tile(bpp, 1080, 1920, tiling.CPU_WHOLE) == 0
    assert tiling.auto_tile_size(feats, LAYERS, 1080, 1920, "cpu") == 0
    assert tiling.plan_tile(bpp, 2160, 3840, tiling.FREE_FRACTION * 20 * 2**30) == 0  # it would fit whole...
    tile = tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cpu")
    assert tile == tiling.plan_tile(bpp, 2160, 3840, tiling.CPU_TILES) and 0 < tile < 2160  # ...but is tiled
    assert tiling.auto_tile_size(feats, LAYERS, 4320, 7680, "cpu") == \
        tiling.plan_tile(bpp, 4320, 7680, tiling.FREE_FRACTION * 20 * 2**30)  # 8K: its own buffers outgrow the caps
    monkeypatch.setattr(tiling, "available_host_memory", lambda: 2 * 2**30)  # less than the cap: what there is
    assert 0 < tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cpu") < tile
    monkeypatch.setattr(tiling, "available_host_memory", lambda: 0.4 * 2**30)
    with pytest.raises(DreamvidError, match="GiB even in"):
        tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cpu")
    free = {"bytes": 200 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 256 * 2**30))
    assert tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cuda") == 0
    free["bytes"] = 3 * 2**30
    tile = tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cuda")
    assert tile == tiling.plan_tile(bpp, 2160, 3840, tiling.FREE_FRACTION * 3 * 2**30) and 0 < tile < 2160
    graphed = tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cuda", graphs=True)
    assert graphed == tiling.plan_tile(bpp, 2160, 3840, tiling.FREE_FRACTION * 3 * 2**30, steps=2) < tile
    assert tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cpu", graphs=True, budget=3 * 2**30) == \
        tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cpu", budget=3 * 2**30)  # no graphs on a CPU
    # an explicit budget wins over the free memory
    assert tiling.auto_tile_size(feats, LAYERS, 2160, 3840, "cuda", budget=500 * 2**30) == 0


class OutOfMemoryWhole(fast.Stepper):
    """The whole-frame step runs out of GPU memory; tiles (which use `gradient`) fit."""

    def __call__(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")


def test_out_of_memory_retries_the_frame_in_tiles_and_warns_once(feats, monkeypatch):
    objective = D.make_objective(feats, LAYERS)
    frames = tiling.FrameSteps(OutOfMemoryWhole(fast.Plan()), feats, LAYERS, "cpu", tile=0, overlap=16)
    seen = []
    real = tiling.tiled_gradient

    def spy(*args, **kwargs):
        seen.append(kwargs["tile"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tiling, "tiled_gradient", spy)
    x = image(128, 192)

    def run(step_fn):
        return D.dream(x, objective, octaves=1, iterations=2, jitter=8, generator=D.image_generator(0, 0),
                       step_fn=step_fn)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = frames.run(run, 128, 192)
        again = frames.run(run, 128, 192)  # the next frame starts tiled
    assert out.shape == x.shape and not torch.equal(out, x) and torch.equal(out, again)
    assert seen == [96] * 4  # half of the frame's longer side; 2 iterations x 2 frames
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "out of memory" in messages[0] and "96 px tiles" in messages[0]
    assert len(messages[0].splitlines()) == 1
    assert frames.tile_for(128, 192) == 96


def test_the_smaller_tile_is_chosen_after_the_failed_frame_is_released(feats, monkeypatch):
    import sys

    frames = tiling.FrameSteps(OutOfMemoryWhole(fast.Plan()), feats, LAYERS, "cpu", tile=0, overlap=16)
    real, handling = frames._smaller_tile, []

    def smaller(*args):
        handling.append(sys.exc_info()[0])  # inside an except block its traceback holds the frame's tensors
        return real(*args)

    monkeypatch.setattr(frames, "_smaller_tile", smaller)
    objective = D.make_objective(feats, LAYERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames.run(lambda step_fn: D.dream(image(128, 192), objective, octaves=1, iterations=1, step_fn=step_fn),
                   128, 192)
    assert handling == [None]


def test_out_of_memory_everywhere_ends_with_advice(feats, monkeypatch):
    stepper = fast.Stepper(fast.Plan())
    frames = tiling.FrameSteps(stepper, feats, LAYERS, "cpu", tile=0, overlap=16)

    def run(step_fn):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DreamvidError, match="lower width/height"):
            frames.run(run, 512, 512)


def test_bad_tile_settings():
    with pytest.raises(DreamvidError, match="speed.tile must be"):
        tiling.FrameSteps(fast.Stepper(fast.Plan()), None, LAYERS, "cpu", tile=-5)
    with pytest.raises(DreamvidError, match="larger than speed.tile_overlap"):
        tiling.FrameSteps(fast.Stepper(fast.Plan()), None, LAYERS, "cpu", tile=64, overlap=64)


def test_a_steps_peak_memory_is_within_the_planners_ratio_of_the_saved_bytes(capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "step_memory.py")
    spec = importlib.util.spec_from_file_location("step_memory", path)
    step_memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_memory)
    assert step_memory.main(["--models", "googlenet", "--sizes", "128,256"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("googlenet")]
    assert len(lines) == 2 and "folded" in lines[1]  # as loaded, and as the tile planner sees it
    for line in lines:
        ratio = float(line.split("peak/saved")[1].split()[0])
        assert 0.5 < ratio <= tiling.PEAK_OVER_SAVED


def test_host_memory_is_estimated_where_the_system_does_not_say_what_is_free(monkeypatch):
    import builtins
    import os

    real_open, real_sysconf = builtins.open, os.sysconf

    def no_proc(path, *a, **k):
        if str(path) == "/proc/meminfo":
            raise OSError("no /proc here")
        return real_open(path, *a, **k)

    def mac_sysconf(name):  # macOS has no SC_AVPHYS_PAGES
        if name == "SC_AVPHYS_PAGES":
            raise ValueError("unrecognized configuration name")
        return {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}.get(name) or real_sysconf(name)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(os, "sysconf", mac_sysconf)
    assert tiling.available_host_memory() == 0.5 * 1000 * 4096
    monkeypatch.setattr(os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert tiling.available_host_memory() == float("inf")
