import warnings

import pytest
import torch

from dreamvid import dream as D
from dreamvid.model import feature_net
from dreamvid.errors import DreamvidError


@pytest.fixture(scope="module")
def feats():
    return feature_net("lite0", ["blocks.4"])


def obj(feats):
    return D.make_objective(feats, ["blocks.4"])


def test_step_keeps_shape_and_range_and_raises_the_objective(feats):
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    o = obj(feats)
    y = x
    for _ in range(3):
        y = D.dream_step(y, o, step=1.5, jitter=0)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    with torch.no_grad():
        assert o(y) > o(x) * 1.05
    # the mean absolute change per step is the step size (in 0-255 levels), up to clamping
    z = D.dream_step(x * 0.5 + 0.25, o, step=1.5, jitter=0)
    assert abs(float((z - (x * 0.5 + 0.25)).abs().mean()) * 255 - 1.5) < 0.05


def test_jitter_is_undone():
    """For a position-independent objective a jittered step equals the unjittered one: the roll is undone."""
    x = torch.rand(1, 3, 40, 50, generator=torch.Generator().manual_seed(0))

    def energy(v):
        return v.pow(3).sum()

    y1 = D.dream_step(x, energy, step=1.0, jitter=16, generator=torch.Generator().manual_seed(1))
    y2 = D.dream_step(x, energy, step=1.0, jitter=0)
    assert torch.allclose(y1, y2, atol=1e-6) and not torch.allclose(y1, x)


def test_octave_sizes_and_reduction_with_warning():
    sizes = D.octave_sizes(140, 200, 4, 1.4, min_size=32)
    assert sizes == [(140, 200), (100, 143), (71, 102), (51, 73)]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sizes = D.octave_sizes(60, 80, 4, 1.4, min_size=32)
    assert sizes == [(60, 80), (43, 57)] and "using 2 octaves" in str(w[0].message)
    with pytest.raises(DreamvidError, match="smaller than"):
        D.octave_sizes(20, 80, 4, 1.4, min_size=32)


def test_only_the_detail_is_carried_up(feats):
    """With zero iterations nothing is dreamed: the result is the input (no pyramid blur carried up)."""
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    y = D.dream(x, obj(feats), octaves=3, iterations=0)
    assert torch.allclose(x, y, atol=1e-6)


def test_detail_from_small_octaves_reaches_the_result(feats):
    calls = []
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    D.dream(x, obj(feats), octaves=2, iterations=1, callback=lambda info: calls.append(info["image"].shape))
    assert calls == [torch.Size([1, 3, 46, 69]), torch.Size([1, 3, 64, 96])]


def test_deterministic_for_a_seed(feats):
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    a = D.dream(x, obj(feats), octaves=2, iterations=2, generator=D.image_generator(7, 3))
    b = D.dream(x, obj(feats), octaves=2, iterations=2, generator=D.image_generator(7, 3))
    c = D.dream(x, obj(feats), octaves=2, iterations=2, generator=D.image_generator(8, 3))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_step_weight_scales_each_pixels_step(feats):
    """A per-pixel weight scales that pixel's step: 0 keeps it, 1 is the plain step, 0.5 half of it."""
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25  # no clamping
    o = obj(feats)
    weight = torch.ones(1, 1, 48, 64)
    weight[..., :16] = 0.0
    weight[..., 32:] = 0.5
    kw = dict(octaves=1, iterations=1, step=1.5, jitter=0)
    plain = D.dream(x, o, **kw)
    y = D.dream(x, o, step_weight=weight, **kw)
    assert torch.equal(y[..., :16], x[..., :16])
    assert torch.allclose(y[..., 16:32], plain[..., 16:32], atol=1e-6)
    assert torch.allclose(y[..., 32:] - x[..., 32:], 0.5 * (plain - x)[..., 32:], atol=1e-6)
    # resized to each octave: a weight of 0 everywhere leaves a two-octave dream where it started
    assert torch.allclose(D.dream(x, o, octaves=2, iterations=2, step_weight=torch.zeros(1, 1, 48, 64)), x, atol=1e-6)


def test_several_layers_weights_and_channels():
    f = feature_net("lite0", ["blocks.4", "blocks.2.dw"])
    x = torch.rand(1, 3, 48, 64)
    o = D.make_objective(f, ["blocks.4", "blocks.2.dw"], [1.0, 0.5], [[0, 3], []])
    assert torch.isfinite(o(x))
    with pytest.raises(DreamvidError, match="layer_weights"):
        D.make_objective(f, ["blocks.4", "blocks.2.dw"], [1.0])
    with pytest.raises(DreamvidError, match="out of range"):
        D.make_objective(f, ["blocks.4"], [], [[999]])(x)


def test_guided_target_picks_the_best_matching_guide_feature():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # two positions: e0, e1
    guide = torch.tensor([[0.0, 2.0], [3.0, 0.0]])  # features (C=2, N=2): g0=(0,3), g1=(2,0)
    t = D.guided_target(a, guide)
    assert torch.equal(t[0, :, 0, 0], torch.tensor([2.0, 0.0]))  # e0 matches g1
    assert torch.equal(t[0, :, 0, 1], torch.tensor([0.0, 3.0]))  # e1 matches g0


def test_guided_dream_moves_towards_the_guide(feats):
    g = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    guides = D.guide_features(feats, g, ["blocks.4"])
    o = D.make_objective(feats, ["blocks.4"], guides=guides)
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    y = D.dream(x, o, octaves=1, iterations=3, jitter=0)
    with torch.no_grad():
        assert o(y) > o(x)
