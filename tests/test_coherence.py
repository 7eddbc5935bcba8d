"""The carried dream's maths on small tensors with known answers."""
import torch

from dreamvid.coherence import bound_residual, carry, carry_maturity, color_match, matured, strength, touch_up_step


def test_the_residual_is_carried_onto_the_fresh_source_where_the_flow_is_reliable():
    prev_source = torch.full((1, 3, 4, 6), 0.5)
    prev_dream = prev_source + 0.1
    source = torch.full((1, 3, 4, 6), 0.3)
    still = torch.zeros(1, 2, 4, 6)  # nothing moved
    mask = torch.ones(1, 1, 4, 6)
    mask[..., :2] = 0  # the left columns are unreliable
    out = carry(prev_dream, prev_source, source, still, mask)
    assert torch.allclose(out[..., 2:], torch.full_like(out[..., 2:], 0.4))  # source + the dream's 0.1
    assert torch.allclose(out[..., :2], source[..., :2])  # the fresh source where the flow is not trusted
    whole = carry(prev_dream, prev_source, source, still, mask, warp_mode="frame")
    assert torch.allclose(whole[..., 2:], prev_dream[..., 2:])


def test_a_residual_stronger_than_the_keyframes_is_scaled_down_to_it():
    source = torch.full((1, 3, 8, 8), 0.5)
    x = source + 40 / 255  # a mean residual of 40 levels
    bounded = bound_residual(x, source, mean=10.0, local=0.0)
    assert abs(strength(bounded, source) - 10.0) < 1e-3
    assert torch.equal(bound_residual(x, source, 0.0, 0.0), x.clamp(0, 1))  # 0: no bound


def test_maturity_travels_and_new_pixels_take_the_larger_step():
    still = torch.zeros(1, 2, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    grown = carry_maturity(None, still, mask, blend=1.0)  # after a keyframe: mature where carried
    assert torch.equal(grown, mask)
    step = touch_up_step(grown, step=0.1, new_step=1.0)
    assert torch.allclose(step, torch.tensor([[[[0.1, 1.0], [0.1, 0.1]]]]))
    assert torch.allclose(matured(grown, step * 8, key_budget=8.0), torch.ones_like(grown))  # a keyframe's worth


def test_colour_matching_moves_the_dreams_colour_statistics_to_the_sources():
    source = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cast = (source * torch.tensor([1.0, 0.6, 0.6]).view(1, 3, 1, 1)).clamp(0, 1)  # a red cast
    assert torch.equal(color_match(cast, source, 0.0), cast)
    matched = color_match(cast, source, 1.0)
    assert (matched.mean((2, 3)) - source.mean((2, 3))).abs().max() < 0.02 < (cast.mean((2, 3)) - source.mean((2, 3))).abs().max()
