"""The render loop puts a finished output on the disk before it removes the checkpoint."""


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
