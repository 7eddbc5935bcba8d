"""Where a render's files go: inputs made absolute for resume=."""


def test_existing_inputs_become_absolute_paths_for_a_resume_from_elsewhere(cfg_factory, tmp_path, monkeypatch):
    import os

    from dreamvid.pipeline.outputs import absolute_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "guide.png").write_bytes(b"x")
    cfg = absolute_inputs(cfg_factory("input=clip.mp4", "dream.guide=guide.png", "model.weights=random"))
    assert cfg.input == str(tmp_path / "clip.mp4") and cfg.dream.guide == str(tmp_path / "guide.png")
    assert cfg.model.weights == "random"
    missing = absolute_inputs(cfg_factory("input=missing.mp4"))
    assert missing.input == "missing.mp4" and not os.path.isabs(missing.input)  # its error names it as typed


def test_inputs_given_from_the_home_folder_are_found(tmp_path, monkeypatch):
    from dreamvid.config import Config
    from dreamvid.pipeline.outputs import absolute_inputs

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "in.png").write_bytes(b"x")
    cfg = absolute_inputs(Config(input="~/in.png"))
    assert cfg.input == str(tmp_path / "in.png")
    assert absolute_inputs(Config(input="~/missing.png")).input == "~/missing.png"  # as typed, for its error
