"""Every setting is declared once: its checks, its warning, --help and the docs' tables come from there."""
from __future__ import annotations

import os

import pytest

from dreamvid import settings
from dreamvid.config import MODES, declared
from dreamvid.errors import DreamvidError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_setting_says_what_it_does_and_which_modes_use_it():
    for d in declared():
        assert d.help and len(d.help) < 160, d.name
        assert d.modes and set(d.modes) <= set(MODES), d.name


@pytest.mark.parametrize("section,doc", sorted(settings.TABLES.items()))
def test_the_docs_tables_are_the_declarations(section, doc):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    assert settings.marked(text, section) == settings.table(section), \
        f"{doc}'s table of {section or 'top-level'} settings is out of date: python -m dreamvid.settings --write"


def test_every_section_has_its_table_somewhere():
    sections = {d.section for d in declared()}
    assert sections <= set(settings.TABLES)


def test_help_lists_every_setting_with_its_default_and_help():
    text = "\n".join(settings.help_lines(width=200))
    for d in declared():
        if not d.internal:
            assert f"  {d.name}=" in text and d.help in text, d.name


@pytest.mark.parametrize("overrides,message", [
    (["dream.octave_scale=1"], "dream.octave_scale=1 must be greater than 1"),
    (["dream.jitter='0:(4), 2:(-4)'", "frames=4"], "dream.jitter=-4 at frame 2 must be 0 or more"),
    (["coherence.cut_threshold=2"], "coherence.cut_threshold=2 must be between 0 and 1 (a fraction of the pixels)"),
    (["neuron.lr=0"], "neuron.lr=0 must be positive"),
    (["speed.graphs=maybe"], "speed.graphs=maybe must be one of auto, on, off"),
    (["motion.border=wrap"], "motion.border=wrap must be one of reflection, border"),
    (["segments=both"], "segments=both must be one of off, auto"),
    (["threads=-1"], "threads=-1 must be 0 or more"),
])
def test_a_declared_rule_is_checked_once_at_the_door(cfg_factory, overrides, message):
    from dreamvid.pipeline.checks import check, with_frames

    with pytest.raises(DreamvidError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(with_frames(cfg_factory(*overrides)))


def test_a_setting_a_mode_ignores_is_said_from_its_declaration(cfg_factory):
    lines = settings.ignored(cfg_factory("mode=neuron"), ["width", "neuron.steps", "dream.step", "flow"])
    assert lines[0].startswith("width is ignored in mode=neuron: width in px") and "(mode=zoom, mode=video)" in lines[0]
    assert "dream.step is ignored in mode=neuron" in lines[1]
    assert lines[2] == "flow is ignored in mode=neuron: flow.* follows the motion of a clip (mode=video)"
    assert settings.ignored(cfg_factory("mode=video"), ["flow", "coherence.step", "neuron.steps"]) == [
        "neuron.steps is ignored in mode=video: neuron.* renders what channels respond to (mode=neuron)"]
