"""The checks at the door, and the warnings for settings a mode ignores."""
import pytest


def test_a_layer_weight_schedule_that_fails_later_is_refused_before_the_render(cfg_factory):
    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline.checks import check

    cfg = cfg_factory("dream.layers=[blocks.10,blocks.8.dw]", "dream.layer_weights=[1,'0:(1), 3:(1/(t-4))']",
                      "frames=6")
    with pytest.raises(DreamvidError, match=r"dream.layer_weights.*at frame 4"):
        check(cfg)
    check(cfg_factory("dream.layers=[blocks.10,blocks.8.dw]", "dream.layer_weights=[1,'0:(1), 3:(2)']", "frames=6"))


def test_per_layer_lists_must_fit_every_keyframe_of_a_layer_schedule(cfg_factory):
    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline.checks import check

    switch = "dream.layers=['0:(blocks.10), 2:(blocks.7+blocks.4)']"
    with pytest.raises(DreamvidError, match=r"layer_weights has 1 weights for the 2 layers from frame 2"):
        check(cfg_factory(switch, "dream.layer_weights=[1]", "frames=4"))
    with pytest.raises(DreamvidError, match=r"dream.channels has 1 lists for the 2 layers \(blocks.7\+blocks.4\)"):
        check(cfg_factory("dream.layers=[blocks.7,blocks.4]", "dream.channels=[[1]]"))
    check(cfg_factory(switch, "frames=4"))  # no per-layer lists: every keyframe fits
    check(cfg_factory("dream.layers=['0:(blocks.10+blocks.4), 2:(blocks.7+blocks.4)']", "dream.layer_weights=[1,2]",
                      "frames=4"))


def test_first_frame_is_a_frame_of_one_whole_clip(cfg_factory):
    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline.checks import check

    with pytest.raises(DreamvidError, match=r"first_frame=-1 must be 0 or more \(a frame of the clip\)"):
        check(cfg_factory("mode=video", "first_frame=-1"))
    with pytest.raises(DreamvidError, match="segments=auto dreams a whole clip: leave first_frame at 0"):
        check(cfg_factory("mode=video", "first_frame=10", "segments=auto"))


def test_max_frames_outside_video_mode_is_warned_about_not_refused(cfg_factory):
    from dreamvid.pipeline.checks import check

    with pytest.warns(UserWarning, match="max_frames shortens a clip"):
        check(cfg_factory("max_frames=3"))


def test_settings_typed_for_a_mode_that_does_not_use_them_are_warned_about(cfg_factory, tmp_path):
    import warnings

    from dreamvid.pipeline.checks import warn_about_settings

    with pytest.warns(UserWarning, match=r"frames=4 is a zoom's length and is ignored in mode=video, .* max_frames=4"):
        warn_about_settings(cfg_factory("mode=video", "frames=4"), ["mode", "frames"])
    with pytest.warns(UserWarning, match=r"ignored in mode=neuron, .* neuron.steps"):
        warn_about_settings(cfg_factory("mode=neuron", "frames=4"), ["frames"])
    (tmp_path / "clip.mp4").write_bytes(b"a clip")
    with pytest.warns(UserWarning, match=r"fps=12 is ignored in mode=video: the dream keeps the clip's own frame rate"):
        warn_about_settings(cfg_factory("mode=video", f"input={tmp_path / 'clip.mp4'}", "fps=12"), ["fps"])
    with pytest.warns(UserWarning, match=r"^motion.zoom, motion.angle are ignored in mode=video: motion.\* moves"):
        warn_about_settings(cfg_factory("mode=video"), ["mode", "motion.zoom", "seed", "motion.angle"])
    with pytest.warns(UserWarning, match=r"^coherence.step is ignored in mode=zoom: coherence.\* carries"):
        warn_about_settings(cfg_factory(), ["coherence.step"])
    with pytest.warns(UserWarning, match=r"^input is ignored in mode=neuron: input is the picture"):
        warn_about_settings(cfg_factory("mode=neuron"), ["input"])
    with pytest.warns(UserWarning, match=r"^first_frame is ignored in mode=zoom: first_frame is where a clip's"):
        warn_about_settings(cfg_factory("first_frame=3"), ["first_frame"])
    with pytest.warns(UserWarning, match=r"a folder of frames has no frame rate of its own: it plays at fps=3; set"):
        warn_about_settings(cfg_factory("mode=video", f"input={tmp_path}", "fps=3"), ["input"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_about_settings(cfg_factory("frames=4", "fps=12"), ["frames", "fps", "input", "motion.zoom"])  # all the zoom's
        warn_about_settings(cfg_factory("mode=video"), ["input", "coherence.step", "flow", "flow.preset", "dream.step"])
        warn_about_settings(cfg_factory("mode=video", f"input={tmp_path}", "fps=24"), ["fps"])  # a folder's rate
        warn_about_settings(cfg_factory("mode=neuron", "fps=12"), ["fps"])  # its recording's rate
        warn_about_settings(cfg_factory("mode=video"), ["mode"])  # debug=tiny's frames, not typed
        warn_about_settings(cfg_factory("mode=video", "fps=12"), ["fps"])  # no clip yet: its error comes first


def test_a_large_input_dreamed_at_its_own_size_on_a_cpu_is_warned_about():
    import warnings

    from dreamvid.config import Config
    from dreamvid.pipeline.checks import warn_if_slow

    with pytest.warns(UserWarning, match=r"1600x1200 \(1.9 MP\), on the CPU: each frame takes about 23x .* width=1024"):
        warn_if_slow(Config(), 1600, 1200, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_slow(Config(), 1600, 1200, "cuda")  # a GPU: large frames are what it is for
        warn_if_slow(Config(width=1600), 1600, 1200, "cpu")  # a size asked for
        warn_if_slow(Config(), 1280, 720, "cpu")  # under a megapixel
