"""dream.guide at keyframes: each keyframe's picture at its frame, a blend of two between them."""
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import make_config

from dreamvid import schedule
from dreamvid.pipeline.dreamer import dreamer
from dreamvid.pipeline.outputs import absolute_inputs, read_files


def pictures(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png"):
        img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(tmp_path / name), img)
        paths.append(str(tmp_path / name))
    return paths


def test_a_picture_schedule_blends_or_switches_and_keeps_plain_paths():
    p = schedule.parse_pictures("0:(a.jpg), 48:(my dir/b.jpg)")
    assert p.pictures == ("a.jpg", "my dir/b.jpg")
    assert p(0) == ("a.jpg", "a.jpg", 0.0) and p(24) == ("a.jpg", "my dir/b.jpg", 0.5) and p(60)[2] == 0.0
    assert schedule.parse_pictures("step: 0:(a.jpg), 10:(b.jpg)")(9) == ("a.jpg", "a.jpg", 0.0)
    assert schedule.parse_pictures("smooth: 0:(a.jpg), 10:(b.jpg)")(2)[2] == pytest.approx(0.104)
    assert schedule.parse_pictures("photo (1).jpg").pictures == ("photo (1).jpg",)  # a plain path stays one
    assert p.with_paths(lambda x: "/abs/" + x) == "0:(/abs/a.jpg), 48:(/abs/my dir/b.jpg)"


def test_each_keyframe_dreams_with_its_picture_and_the_frames_between_with_both(tmp_path, monkeypatch):
    a, b = pictures(tmp_path)
    monkeypatch.chdir(tmp_path)
    sched = absolute_inputs(make_config("dream.guide='0:(a.png), 4:(b.png)'", "dream.iterations=2"))
    assert sched.dream.guide == f"0:({a}), 4:({b})" and read_files(sched)[1:3] == (a, b)
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    s = {"octaves": 1, "octave_scale": 1.4, "iterations": 2, "step": 1.5, "jitter": 8, "guide_weight": 1.0}
    dev = torch.device("cpu")
    blended = dreamer(sched, dev)
    only = {p: dreamer(make_config(f"dream.guide={p}", "dream.iterations=2"), dev) for p in (a, b)}
    assert torch.equal(blended(x, 0, s), only[a](x, 0, s))  # at its keyframe, its picture alone
    assert torch.equal(blended(x, 4, s), only[b](x, 4, s))
    mid = blended(x, 2, s)
    assert not torch.equal(mid, only[a](x, 2, s)) and not torch.equal(mid, only[b](x, 2, s))
    assert os.path.basename(read_files(sched)[1]) == "a.png"
