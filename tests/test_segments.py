"""Splitting a clip into segments at cuts and chunks, and joining the segments with cross-fades."""
import numpy as np
import pytest

from dreamvid import segments as S
from dreamvid.errors import DreamvidError
from test_clip import panning


def two_scenes(n=6):
    return panning(n=n, seed=0) + panning(n=n, seed=1)


def test_find_cuts_marks_the_first_frame_of_a_new_scene_only():
    assert S.find_cuts(two_scenes(), "dis", "fast") == [6]
    assert S.find_cuts(panning(n=8), "dis", "fast") == []
    assert S.find_cuts(two_scenes(), "none") == []


def test_plan_splits_at_cuts_then_into_chunks_that_lead_in_by_the_overlap():
    segs = S.plan(100, [40], max_frames=25, overlap=4)
    assert [(s.start, s.end, s.lead) for s in segs] == [(0, 20, 0), (20, 40, 4), (40, 60, 0), (60, 80, 4),
                                                     (80, 100, 4)]
    assert [s.index for s in segs] == [0, 1, 2, 3, 4] and segs[1].first == 16 and segs[1].frames == 24
    # a lead never reaches back past the previous chunk, nor across a cut
    assert [(s.start, s.lead) for s in S.plan(9, [], max_frames=2, overlap=8)] == [(0, 0), (2, 2), (4, 2), (5, 1),
                                                                              (7, 2)]
    assert [(s.start, s.end, s.lead) for s in S.plan(5, [0, 5, 9], 10, 3)] == [(0, 5, 0)]
    for bad in [(0, [], 5, 1), (5, [], 0, 1), (5, [], 5, -1)]:
        with pytest.raises(DreamvidError):
            S.plan(*bad)


def test_crossfade_dissolves_from_the_previous_into_the_current_segment():
    black, white = [np.zeros((2, 2, 3), np.uint8)] * 3, [np.full((2, 2, 3), 200, np.uint8)] * 3
    assert [int(f[0, 0, 0]) for f in S.crossfade(black, white)] == [50, 100, 150]


def _frames(values, h=2, w=3):
    return [np.full((h, w, 3), v, np.uint8) for v in values]


def test_join_keeps_every_frame_once_in_order_and_fades_only_the_overlaps():
    segs = S.plan(10, [6], max_frames=3, overlap=1)  # (0,3) (3,6 lead 1) (6,8) (8,10 lead 1)
    assert [(s.first, s.end) for s in segs] == [(0, 3), (2, 6), (6, 8), (7, 10)]
    # each segment renders frame t as 10 * t + segment index, so fades are recognisable
    readers = [iter(_frames([10 * t + s.index for t in range(s.first, s.end)])) for s in segs]
    got = [int(f[0, 0, 0]) for f in S.join(segs, readers)]
    assert len(got) == 10
    assert got[:2] == [0, 10] and got[3:6] == [31, 41, 51] and got[6] == 62 and got[8:] == [83, 93]
    assert got[2] == round((20 + 21) / 2) and got[7] == round((72 + 73) / 2)  # half-way dissolves


def test_join_reports_a_short_segment():
    segs = S.plan(6, [], max_frames=3, overlap=1)
    with pytest.raises(DreamvidError, match="segment 1 ended early"):
        list(S.join(segs, [iter(_frames(range(3))), iter(_frames(range(2)))]))


def test_plan_round_trip_is_tied_to_its_render(tmp_path):
    out = str(tmp_path / "o.mp4")
    segs = S.plan(10, [4], 5, 2)
    S.save_plan(out, segs, "k1")
    assert S.load_plan(out, "k1") == segs and S.load_plan(out) == segs
    assert S.load_plan(out, "k2") is None
    assert S.segment_path(out, 3).endswith("o.mp4.segments/segment_0003.mkv")


def test_dissolve_over_the_source_keeps_the_strength_of_two_unrelated_dreams():
    rng = np.random.default_rng(0)
    source = np.full((32, 32, 3), 128, np.uint8)
    a, b = (np.clip(128 + rng.normal(0, 20, source.shape), 0, 255).astype(np.uint8) for _ in range(2))
    plain, kept = S.dissolve(a, b, 0.5), S.dissolve(a, b, 0.5, source)
    strength = lambda x: np.abs(x.astype(float) - 128).mean()  # noqa: E731
    assert strength(plain) < 0.8 * strength(a)  # plain mixing fades the dream half-way
    assert strength(kept) == pytest.approx((strength(a) + strength(b)) / 2, rel=0.03)
    assert np.array_equal(S.dissolve(a, a, 0.3, source), a)  # the same dream stays itself


def test_join_with_sources_takes_one_source_frame_per_output_frame():
    segs = S.plan(10, [6], max_frames=3, overlap=1)
    readers = [iter(_frames([10 * t + s.index for t in range(s.first, s.end)])) for s in segs]
    sources = iter(_frames([10 * t for t in range(10)]))
    got = [int(f[0, 0, 0]) for f in S.join(segs, readers, sources)]
    assert len(got) == 10 and got[:2] == [0, 10] and got[3:7] == [31, 41, 51, 62]
    assert next(sources, None) is None  # all ten consumed, in step
    with pytest.raises(DreamvidError, match="source clip ended"):
        readers = [iter(_frames([10 * t + s.index for t in range(s.first, s.end)])) for s in segs]
        list(S.join(segs, readers, iter(_frames(range(5)))))
