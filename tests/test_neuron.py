"""Neuron mode: channel parsing, the image priors, the transforms, grids, and that a rendered image
really is what its channel responds to (real built-in lite0 weights, CPU, small)."""
from __future__ import annotations

import os

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from dreamvid import neuron as N
from dreamvid.cli import register
from dreamvid.config import Config, NeuronConfig
from dreamvid.model import feature_net
from dreamvid.errors import DreamvidError
from dreamvid.pipeline.neuron import output_paths, run_neuron

LAYER = "blocks.7"  # 80 channels, stride 16: quick on a CPU and already selective
CHANNELS = [3, 17, 42]


def neuron_config(tmp_path, *overrides: str) -> Config:
    """The real composed config (debug=tiny) with overrides, as the command line would build it."""
    register()
    with initialize_config_module(version_base=None, config_module="dreamvid.conf"):
        dcfg = compose(config_name="config", overrides=["mode=neuron", "debug=tiny", "device=cpu",
                                                        f"output={tmp_path}", *overrides])
    return OmegaConf.to_object(dcfg)


# -- channels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    (None, list(range(8))),
    ([], list(range(8))),
    ("", list(range(8))),
    (5, [5]),
    ("12", [12]),
    ("10-13", [10, 11, 12, 13]),
    ("first:3", [0, 1, 2]),
    (["first:2", 7, "4-5"], [0, 1, 7, 4, 5]),
    ([3, "2-4"], [3, 2, 4]),  # order kept, duplicates dropped
    ("1,6", [1, 6]),
])
def test_parse_channels(spec, expected):
    assert N.parse_channels(spec, 112) == expected


def test_parse_channels_default_is_capped_by_the_layer():
    assert N.parse_channels([], 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("spec, message", [
    (112, "valid: 0-111"), (-1, "valid: 0-111"), ("100-120", "valid: 0-111"), ("first:200", "valid: 0-111"),
    ("9-3", "write 3-9"), ("first:0", "N >= 1"), ("dogs", "first:N"), ([1.5], "an int"), (True, "an int"),
])
def test_parse_channels_errors(spec, message):
    with pytest.raises(DreamvidError, match=message):
        N.parse_channels(spec, 112, layer="blocks.10")


# -- parameterisations -------------------------------------------------------------------------

@pytest.mark.parametrize("h, w", [(64, 64), (33, 47)])
def test_fourier_image_shape_range_and_seed(h, w):
    params, image = N.fourier_image(2, h, w, generator=torch.Generator().manual_seed(1))
    x = image()
    assert x.shape == (2, 3, h, w)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert (x - 0.5).abs().max() < 0.2  # small init: starts as faint noise on grey
    _, again = N.fourier_image(2, h, w, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, again())
    x.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0


def test_fourier_spectrum_follows_decay():
    """Equal coefficients in -> amplitudes ~ 1/f out: low frequencies carry most of the energy."""
    freqs = N.rfft2_freqs(64, 64)
    assert freqs.shape == (64, 33) and freqs[0, 0] == 0
    assert torch.isclose(freqs[0, 32], torch.tensor(0.5)) and torch.isclose(freqs[32, 0], torch.tensor(0.5))
    torch.manual_seed(0)
    _, image = N.fourier_image(16, 64, 64, sd=0.01, decay_power=1.0)
    spectrum = torch.fft.rfft2(torch.logit(image())).abs().mean((0, 1))
    assert spectrum[1, 1] > 5 * spectrum[16, 16]


def test_color_decorrelation_is_normalised():
    assert torch.isclose(N.COLOR_DECORRELATION.norm(dim=0).max(), torch.tensor(1.0))


@pytest.mark.parametrize("squash", ["sigmoid", "clamp"])
def test_pixel_image(squash):
    params, image = N.pixel_image(3, 40, 50, squash=squash, generator=torch.Generator().manual_seed(0))
    x = image()
    assert x.shape == (3, 3, 40, 50) and 0.0 <= x.min() and x.max() <= 1.0
    x.mean().backward()
    assert params[0].grad.abs().sum() > 0
    with pytest.raises(DreamvidError, match="sigmoid or clamp"):
        N.pixel_image(1, 8, 8, squash="tanh")


# -- transforms --------------------------------------------------------------------------------

def test_standard_transforms_shape_and_determinism():
    x = torch.rand(4, 3, 64, 64)
    t = N.standard_transforms()
    a = t(x, torch.Generator().manual_seed(3))
    b = t(x, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 64 + 24 - 8 - 4, 64 + 24 - 8 - 4)
    assert torch.equal(a, b)
    c = N.standard_transforms("constant")(x, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)


def test_identity_settings_leave_the_image_alone():
    x = torch.rand(2, 3, 32, 48)
    assert torch.allclose(N.random_scale(1.0, 1.0)(x), x, atol=1e-5)
    assert torch.allclose(N.random_rotate(0.0)(x), x, atol=1e-5)
    assert torch.equal(N.compose()(x), x)


def test_rotation_keeps_a_centred_disc_round_on_a_wide_image():
    """Rotation is in pixels, not in normalised coordinates: a disc stays a disc when H != W."""
    yy, xx = torch.meshgrid(torch.arange(24.0) - 11.5, torch.arange(48.0) - 23.5, indexing="ij")
    disc = ((yy**2 + xx**2) < 8**2).float().expand(3, 3, 24, 48)
    out = N.random_rotate(45.0)(disc, torch.Generator().manual_seed(0))[..., 12:36]  # corners reflect
    assert (out - disc[..., 12:36]).abs().mean() < 0.05  # a wrong aspect gives ~0.2
    assert torch.isclose(out.sum((1, 2, 3)), disc.sum((1, 2, 3)), rtol=0.03).all()


def test_jitter_is_a_crop_per_image():
    x = torch.arange(2 * 10 * 10, dtype=torch.float32).view(2, 1, 10, 10).expand(2, 3, 10, 10)
    y = N.jitter(3)(x, torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 7, 7)
    for b in range(2):  # every crop is an exact window of its own image
        oy, ox = divmod(int(y[b, 0, 0, 0].item()) - 100 * b, 10)
        assert torch.equal(y[b], x[b, :, oy:oy + 7, ox:ox + 7])


@pytest.mark.parametrize("factory, args, message", [
    (N.pad, (-1,), "0 or more"), (N.pad, (4, "wrap"), "reflect or constant"), (N.jitter, (0,), ">= 1"),
    (N.jitter, (2.5,), "whole number"), (N.random_scale, (1.1, 0.9), "low <= high"),
    (N.random_rotate, (-5,), "0 or more"), (N.compose, (3,), "callables"),
])
def test_transform_factories_check_arguments(factory, args, message):
    with pytest.raises(DreamvidError, match=message):
        factory(*args)


# -- objective ---------------------------------------------------------------------------------

def test_channel_and_neuron_objectives():
    acts = torch.zeros(2, 4, 5, 6)
    acts[0, 1] = 1.0
    acts[1, 3, 2, 3] = 30.0  # the centre position of a 5x6 map
    ch = torch.tensor([1, 3])
    assert torch.allclose(N.channel_objective(acts, ch, "channel"), torch.tensor([1.0, 1.0]))
    assert torch.allclose(N.channel_objective(acts, ch, "neuron"), torch.tensor([1.0, 30.0]))
    with pytest.raises(DreamvidError, match="channel, neuron"):
        N.channel_objective(acts, ch, "class")


# -- grids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, layout", [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)),
                                       (8, (3, 3)), (10, (3, 4)), (16, (4, 4))])
def test_grid_layout_is_near_square(n, layout):
    assert N.grid_layout(n) == layout


@pytest.mark.parametrize("n", [1, 5, 8])
def test_grid_has_one_labelled_cell_per_image(n):
    h, w, lh, gap = 40, 56, N.LABEL_HEIGHT, N.GAP
    images = [np.full((h, w, 3), 60 + 20 * k, np.uint8) for k in range(n)]
    labels = [f"blocks.10:{100 + k}" for k in range(n)]
    grid = N.make_grid(images, labels)
    rows, cols = N.grid_layout(n)
    assert grid.shape == (rows * (h + lh) + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3)
    assert grid.shape[:2] == N.grid_size(n, h, w)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + lh + gap), gap + c * (w + gap)
        cell, strip = grid[y:y + h, x:x + w], grid[y + h:y + h + lh, x:x + w]
        if k < n:
            assert (cell == 60 + 20 * k).all()
            assert (strip.max(axis=2) > 128).sum() >= 10, f"label strip {k} is empty"
        else:
            assert (cell == N.BACKGROUND).all() and (strip == N.BACKGROUND).all()


def test_comparison_grid_has_two_titled_rows():
    a = [np.zeros((32, 32, 3), np.uint8)] * 3
    out = N.comparison_grid([("without prior", a, ["x:1", "x:2", "x:3"]), ("with prior", a, ["x:1", "x:2", "x:3"])])
    row = N.LABEL_HEIGHT + 6 + 32 + N.LABEL_HEIGHT + 2 * N.GAP
    assert out.shape == (2 * row, 3 * 32 + 4 * N.GAP, 3)
    for title_top in (0, row):
        assert (out[title_top:title_top + N.LABEL_HEIGHT + 6].max(axis=2) > 128).sum() > 20


# -- rendering with the real network --------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a CPU shared with other work, a second intra-op thread mostly waits (here 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lite7():
    return feature_net("lite0", [LAYER])


@pytest.fixture(scope="module")
def rendered(lite7):
    return N.render(lite7, LAYER, CHANNELS, size=64, steps=48, lr=0.05,
                    generator=torch.Generator().manual_seed(0))


def centre_scores(feats, images):
    """(B, len(CHANNELS)) channel means on the centre of each image, no transforms."""
    return N.channel_means(feats, LAYER, images[:, :, 8:56, 8:56], CHANNELS)


def test_rendered_images_excite_their_own_channel(lite7, rendered):
    assert rendered.shape == (3, 3, 64, 64) and 0 <= rendered.min() and rendered.max() <= 1
    scores = centre_scores(lite7, rendered)
    noise = centre_scores(lite7, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(5)))
    for b in range(len(CHANNELS)):
        own = scores[b, b]
        # Much more than noise does...
        assert own > noise[:, b].max() + 8.0, (own, noise[:, b])
        # ...and more than this image excites the other channels of the set.
        others = torch.cat([scores[b, :b], scores[b, b + 1:]])
        assert own > 1.5 * others.max().clamp(min=1.0), (b, scores)


def test_pixel_parameterisation_also_optimises(lite7):
    img = N.render(lite7, LAYER, CHANNELS[:2], size=48, steps=12, param="pixel",
                   generator=torch.Generator().manual_seed(0))
    start = N.pixel_image(2, 48, 48, generator=torch.Generator().manual_seed(0))[1]()
    after, before = (N.channel_means(lite7, LAYER, x, CHANNELS[:2]).diag() for x in (img, start))
    assert (after > before + 2.0).all(), (before, after)


def test_render_is_deterministic_and_reports_each_step(lite7):
    seen = []
    run = [N.render(lite7, LAYER, [1, 2], size=48, steps=3, generator=torch.Generator().manual_seed(7),
                    callback=lambda s: seen.append(s["step"])) for _ in range(2)]
    assert torch.equal(run[0], run[1])
    assert seen == [0, 1, 2, 3] * 2


# -- the mode ----------------------------------------------------------------------------------

def test_run_neuron_writes_images_grid_video_and_comparison(tmp_path):
    cfg = neuron_config(tmp_path, f"dream.layers=[{LAYER}]", "channels=[first:2,33]",
                        "neuron.steps=6", "neuron.record_every=2", "neuron.compare=true", "neuron.objective=neuron")
    out = run_neuron(cfg)
    assert out["images"] == [str(tmp_path / f"channel_{c:04d}.png") for c in (0, 1, 33)]
    for p in out["images"]:
        assert cv2.imread(p).shape == (48, 48, 3)
    assert cv2.imread(out["grid"]).shape[:2] == N.grid_size(3, 48, 48)
    assert cv2.imread(out["compare"]) is not None
    frames, _ = imageio_ffmpeg.count_frames_and_secs(out["video"])
    assert frames == len(N.recorded_steps(6, 2)) == 4  # steps 0, 2, 4, 6
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["channel_0000.png", "channel_0001.png", "channel_0033.png", "grid.png", "compare.png", "optimisation.mp4",
         "grid.png.yaml"])  # the settings beside the grid

    # A second run refuses to overwrite, before doing any work.
    with pytest.raises(DreamvidError, match="overwrite=true"):
        run_neuron(cfg)


def test_grid_cells_are_the_channel_images(tmp_path):
    cfg = neuron_config(tmp_path, "dream.layers=[blocks.2]", "channels=[5]", "neuron.steps=1")
    grid = cv2.imread(run_neuron(cfg)["grid"])
    g = N.GAP
    assert np.array_equal(grid[g:g + 48, g:g + 48], cv2.imread(str(tmp_path / "channel_0005.png")))


@pytest.mark.parametrize("overrides, message", [
    (["dream.layers=[blocks.4,blocks.7]"], "one layer at a time"),
    (["dream.layers=[blocks.4]", "channels=[40]"], "valid: 0-39"),
    (["neuron.param=noise"], "fourier, pixel"),
    (["neuron.size=16"], "neuron.size"),
])
def test_run_neuron_rejects_bad_settings(tmp_path, overrides, message):
    from dreamvid import pipeline

    with pytest.raises(DreamvidError, match=message):
        pipeline.run(neuron_config(tmp_path, *overrides))


def test_the_output_is_a_folder_or_the_grid_with_the_channels_beside_it(tmp_path):
    folder = output_paths(Config(mode="neuron"), str(tmp_path), [3])
    assert (folder["grid"], folder["images"]) == (str(tmp_path / "grid.png"), [str(tmp_path / "channel_0003.png")])
    assert output_paths(Config(mode="neuron", output=str(tmp_path / "x")), "/elsewhere", [3])["folder"] == \
        str(tmp_path / "x")
    named = output_paths(Config(mode="neuron", output=str(tmp_path / "look.png"), neuron=NeuronConfig(compare=True)),
                         "/elsewhere", [3, 4])
    assert named["grid"] == str(tmp_path / "look.png") and named["compare"] == str(tmp_path / "look_compare.png")
    assert named["images"] == [str(tmp_path / "look_channel_0003.png"), str(tmp_path / "look_channel_0004.png")]
    with pytest.raises(DreamvidError, match="must be a folder or a .png"):
        output_paths(Config(mode="neuron", output=str(tmp_path / "grid.jpg")), "/elsewhere", [3])


def test_output_name_png_writes_that_grid_and_the_channels_beside_it(tmp_path):
    cfg = neuron_config(tmp_path, "dream.layers=[blocks.2]", "channels=[5,6]", "neuron.steps=1",
                        f"output={tmp_path / 'look.png'}")
    out = run_neuron(cfg)
    assert out["grid"] == str(tmp_path / "look.png")
    assert sorted(os.listdir(tmp_path)) == ["look.png", "look.png.yaml", "look_channel_0005.png",
                                            "look_channel_0006.png"]
