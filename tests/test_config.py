import glob
import os

import pytest

from conftest import make_config

CONF = os.path.join(os.path.dirname(__file__), "..", "dreamvid", "conf")


def options(group):
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONF, group, "*.yaml")))


@pytest.mark.parametrize("group", ["model", "flow", "preset", "debug"])
def test_every_option_of_every_group_composes(group):
    names = options(group)
    assert names, group
    for name in names:
        cfg = make_config(f"{group}={name}")
        if group == "model":
            assert cfg.model.name == name and cfg.model.layers


def test_defaults():
    cfg = make_config(tiny=False)
    assert cfg.mode == "zoom" and cfg.model.name == "lite0" and cfg.flow.method == "dis"
    assert cfg.dream.octaves == 4 and cfg.dream.octave_scale == 1.4 and cfg.dream.iterations == 10


def test_typo_in_a_key_is_rejected():
    with pytest.raises(Exception, match="fram"):
        make_config("fram=3")
    with pytest.raises(Exception, match="octave"):
        make_config("dream.octave=3")


def test_cli_names_are_the_contract():
    cfg = make_config("mode=video", "input=a.mp4", "output=b.gif", "frames=5", "fps=24", "width=64", "height=32",
                      "seed=3", "device=cpu", "model=googlenet", "dream.layers=[inception4c]", "dream.octaves=3",
                      "dream.octave_scale=1.5", "dream.iterations=4", "dream.step=2", "dream.jitter=8",
                      "dream.guide=g.png", "motion.zoom=1.1", "motion.angle=5", "motion.tx=2", "motion.ty=-1")
    assert (cfg.mode, cfg.input, cfg.output, cfg.frames, cfg.fps) == ("video", "a.mp4", "b.gif", 5, 24)
    assert cfg.model.name == "googlenet" and cfg.dream.layers == ["inception4c"] and cfg.motion.ty == -1
