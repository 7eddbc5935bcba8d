"""The render loop's helpers: iterating ahead in a background thread."""
import threading
import time

import pytest

from dreamvid.pipeline.common import ahead


def test_ahead_keeps_order_and_raises_errors_after_the_items_before_them():
    def items():
        yield from range(5)
        raise ValueError("decoding stopped")

    got = []
    with pytest.raises(ValueError, match="decoding stopped"):
        for x in ahead(items(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_ahead_runs_at_most_depth_items_ahead_and_stops_with_the_consumer():
    made, closed = [], threading.Event()

    def items():
        try:
            for i in range(1000):
                made.append(threading.current_thread().name)
                yield i
        finally:
            closed.set()

    it = ahead(items(), depth=3)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(made) <= 1 + 3 + 1  # the one consumed, the queue, one waiting to be put
    assert set(made) == {"dreamvid-ahead"}
    it.close()
    assert closed.wait(2) and not any(t.name == "dreamvid-ahead" for t in threading.enumerate())


def test_a_layer_weight_schedule_that_fails_later_is_refused_before_the_render(cfg_factory):
    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline.common import check

    cfg = cfg_factory("dream.layers=[blocks.10,blocks.8.dw]", "dream.layer_weights=[1,'0:(1), 3:(1/(t-4))']",
                      "frames=6")
    with pytest.raises(DreamvidError, match=r"dream.layer_weights.*at frame 4"):
        check(cfg)
    check(cfg_factory("dream.layers=[blocks.10,blocks.8.dw]", "dream.layer_weights=[1,'0:(1), 3:(2)']", "frames=6"))


def test_existing_inputs_become_absolute_paths_for_a_resume_from_elsewhere(cfg_factory, tmp_path, monkeypatch):
    import os

    from dreamvid.pipeline.common import absolute_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "guide.png").write_bytes(b"x")
    cfg = absolute_inputs(cfg_factory("input=clip.mp4", "dream.guide=guide.png", "model.weights=random"))
    assert cfg.input == str(tmp_path / "clip.mp4") and cfg.dream.guide == str(tmp_path / "guide.png")
    assert cfg.model.weights == "random"
    missing = absolute_inputs(cfg_factory("input=missing.mp4"))
    assert missing.input == "missing.mp4" and not os.path.isabs(missing.input)  # its error names it as typed


def test_per_layer_lists_must_fit_every_keyframe_of_a_layer_schedule(cfg_factory):
    from dreamvid.errors import DreamvidError
    from dreamvid.pipeline.common import check

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
    from dreamvid.pipeline.common import check

    with pytest.raises(DreamvidError, match="first_frame must be 0 or more"):
        check(cfg_factory("mode=video", "first_frame=-1"))
    with pytest.raises(DreamvidError, match="segments=auto dreams a whole clip: leave first_frame at 0"):
        check(cfg_factory("mode=video", "first_frame=10", "segments=auto"))


def test_max_frames_outside_video_mode_is_warned_about_not_refused(cfg_factory):
    from dreamvid.pipeline.common import check

    with pytest.warns(UserWarning, match="max_frames shortens a clip"):
        check(cfg_factory("max_frames=3"))


def test_settings_typed_for_a_mode_that_does_not_use_them_are_warned_about(cfg_factory, tmp_path):
    import warnings

    from dreamvid.pipeline.common import warn_about_settings

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
    from dreamvid.pipeline.common import warn_if_slow

    with pytest.warns(UserWarning, match=r"1600x1200 \(1.9 MP\), on the CPU: each frame takes about 23x .* width=1024"):
        warn_if_slow(Config(), 1600, 1200, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_slow(Config(), 1600, 1200, "cuda")  # a GPU: large frames are what it is for
        warn_if_slow(Config(width=1600), 1600, 1200, "cpu")  # a size asked for
        warn_if_slow(Config(), 1280, 720, "cpu")  # under a megapixel


def test_inputs_given_from_the_home_folder_are_found(tmp_path, monkeypatch):
    from dreamvid.config import Config
    from dreamvid.pipeline.common import absolute_inputs

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "in.png").write_bytes(b"x")
    cfg = absolute_inputs(Config(input="~/in.png"))
    assert cfg.input == str(tmp_path / "in.png")
    assert absolute_inputs(Config(input="~/missing.png")).input == "~/missing.png"  # as typed, for its error


def test_a_finished_output_is_on_the_disk_before_its_checkpoint_is_removed(cfg_factory, tmp_path, disk_events,
                                                                           monkeypatch):
    import os

    from dreamvid import pipeline

    out = str(tmp_path / "z.mp4")
    pipeline.run(cfg_factory("frames=2", f"output={out}"))
    encoded = os.path.join(out + ".state", "output.partial")  # encoded in the render's own folder
    flushed = disk_events.index(("flush", encoded))
    placed = disk_events.index(("rename", out))
    assert flushed < placed < disk_events.index(("remove", out + ".state"))
    assert disk_events[placed + 1] == ("flush", str(tmp_path))
